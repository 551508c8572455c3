"""Choose an attention backend for (q, k, v, mask): a priority list, a visible choice, a clear refusal."""

from __future__ import annotations

import logging

from torch import Tensor

from dlm.attention.backends import BACKENDS, Backend
from dlm.attention.masks import Mask

log = logging.getLogger(__name__)
_announced: set[tuple[str, str, str]] = set()


def _validate(q: Tensor, k: Tensor, v: Tensor) -> None:
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


def select(q: Tensor, k: Tensor, v: Tensor, mask: Mask, backend: str | None = None) -> Backend:
    """The first backend in priority order that supports the inputs, or the forced one."""
    if backend is not None:
        if backend not in BACKENDS:
            raise ValueError(f"unknown attention backend {backend!r}; expected one of {list(BACKENDS)}")
        chosen = BACKENDS[backend]
        reasons = chosen.not_supported_reasons(q, k, v, mask)
        if reasons:
            raise ValueError(f"attention backend {backend!r} cannot run {mask}: {'; '.join(reasons)}")
        return chosen
    refusals = []
    for candidate in BACKENDS.values():
        reasons = candidate.not_supported_reasons(q, k, v, mask)
        if not reasons:
            return candidate
        refusals.append(f"{candidate.name}: {'; '.join(reasons)}")
    raise ValueError(
        f"no attention backend can run {mask} on {q.device.type}/{q.dtype}: " + " | ".join(refusals)
    )


def attend(q: Tensor, k: Tensor, v: Tensor, mask: Mask, backend: str | None = None) -> Tensor:
    """softmax(q k^T / sqrt(d) + mask) v with q (B, Hq, Lq, D), k and v (B, Hkv, Lk, D); Hq % Hkv == 0."""
    _validate(q, k, v)
    mask.check(q.shape[2], k.shape[2])
    chosen = select(q, k, v, mask, backend)
    key = (chosen.name, type(mask).__name__, q.device.type)
    if key not in _announced:
        _announced.add(key)
        log.info("attention: %s backend for %s on %s", chosen.name, type(mask).__name__, q.device.type)
    return chosen.forward(q, k, v, mask)
