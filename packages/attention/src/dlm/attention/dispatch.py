"""Choose an attention backend for (q, k, v, mask): a priority list, a visible choice, a clear refusal.

Priority: xformers, flex, split, sdpa; the first whose declared devices, dtypes and masks fit runs.
A backend is chosen only for masks it runs in a structured way (xformers: its own biases for Causal,
Bidirectional, Draft, Verify; split: the x_t (+) x_0 masks from a size on), so on CUDA the training
masks go to flex (or split) rather than to a dense bias; sdpa, the reference, takes the rest.
A backend can be forced by name: the `backend` argument (the model config's `attention_backend`)
first, else the environment variable DLM_ATTENTION_BACKEND. A forced backend that cannot run the
inputs raises with its reasons; it never falls back silently.
"""

from __future__ import annotations

import logging
import os

from torch import Tensor

from dlm.attention.backends import BACKENDS, Backend
from dlm.attention.masks import Mask

ENV_VAR = "DLM_ATTENTION_BACKEND"

log = logging.getLogger(__name__)
_announced: set[tuple[str, str, str, bool]] = set()


def _validate(q: Tensor, k: Tensor, v: Tensor, mask: Mask) -> None:
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise ValueError(
            f"q, k, v must be (batch, heads, length, head_dim); got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}"
        )
    if k.shape != v.shape:
        raise ValueError(f"k and v shapes differ: {tuple(k.shape)} vs {tuple(v.shape)}")
    if q.shape[0] != k.shape[0] or q.shape[3] != k.shape[3]:
        raise ValueError(f"q {tuple(q.shape)} and k {tuple(k.shape)} differ in batch or head_dim")
    if q.shape[1] % k.shape[1]:
        raise ValueError(f"query heads {q.shape[1]} are not a multiple of key/value heads {k.shape[1]}")
    if not (q.dtype == k.dtype == v.dtype):
        raise ValueError(f"q, k, v dtypes differ: {q.dtype}, {k.dtype}, {v.dtype}")
    if not (q.device == k.device == v.device):
        raise ValueError(f"q, k, v devices differ: {q.device}, {k.device}, {v.device}")
    if mask.rows not in (1, q.shape[0]):
        raise ValueError(f"{mask} distinguishes {mask.rows} batch rows but q has batch {q.shape[0]}")


def forced_name(backend: str | None = None) -> str | None:
    """The backend the caller forces: the argument, else $DLM_ATTENTION_BACKEND, else None."""
    name = backend or os.environ.get(ENV_VAR) or None
    if name is not None and name not in BACKENDS:
        source = "the backend argument" if backend else f"${ENV_VAR}"
        raise ValueError(
            f"unknown attention backend {name!r} (from {source}); expected one of {list(BACKENDS)}"
        )
    return name


def refusals(q: Tensor, k: Tensor, v: Tensor, mask: Mask) -> dict[str, list[str]]:
    """Every backend's reasons for not running these inputs unforced (empty list: it can)."""
    return {name: b.not_supported_reasons(q, k, v, mask) for name, b in BACKENDS.items()}


def select(q: Tensor, k: Tensor, v: Tensor, mask: Mask, backend: str | None = None) -> Backend:
    """The forced backend (see forced_name) or the first in priority order that supports the inputs."""
    name = forced_name(backend)
    if name is not None:
        chosen = BACKENDS[name]
        reasons = chosen.not_supported_reasons(q, k, v, mask, forced=True)
        if reasons:
            raise ValueError(
                f"attention backend {name!r} cannot run {mask} on {q.device.type}/{q.dtype}: {'; '.join(reasons)}"
            )
        return chosen
    refused = []
    for candidate in BACKENDS.values():
        reasons = candidate.not_supported_reasons(q, k, v, mask)
        if not reasons:
            return candidate
        refused.append(f"{candidate.name}: {'; '.join(reasons)}")
    raise ValueError(
        f"no attention backend can run {mask} on {q.device.type}/{q.dtype}: " + " | ".join(refused)
    )


def _kind(mask: Mask) -> str:
    """The mask's family for the log line: its class, or its parts' classes for a combinator."""
    parts = getattr(mask, "parts", None)
    if parts is None:
        return type(mask).__name__
    return f"{type(mask).__name__}({', '.join(_kind(p) for p in parts)})"


def attend(q: Tensor, k: Tensor, v: Tensor, mask: Mask, backend: str | None = None) -> Tensor:
    """softmax(q k^T / sqrt(d) + mask) v with q (B, Hq, Lq, D), k and v (B, Hkv, Lk, D); Hq % Hkv == 0.

    `backend` forces one kernel by name (sdpa, split, flex, xformers); None lets dispatch choose.
    """
    _validate(q, k, v, mask)
    mask.check(q.shape[2], k.shape[2])
    chosen = select(q, k, v, mask, backend)
    key = (chosen.name, _kind(mask), q.device.type, bool(backend or os.environ.get(ENV_VAR)))
    if key not in _announced:
        _announced.add(key)
        how = "forced" if key[3] else "chosen"
        log.info("attention: %s backend %s for %s on %s", chosen.name, how, key[1], key[2])
    return chosen.forward(q, k, v, mask)
