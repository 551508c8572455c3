"""The mask protocol: a mask is a small frozen object, not a tensor.

Every mask answers `mask_mod(b, h, q, kv)` (FlexAttention's signature, elementwise on index tensors)
and `materialize(q_len, kv_len)`, the dense boolean reference built from `mask_mod` itself, so the
two can never disagree. Subclasses describe their shape rules in `check`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import Tensor


class Mask:
    """Base class. Subclasses are frozen dataclasses, hence hashable and usable as cache keys."""

    #: Number of batch rows the mask distinguishes (1 means the same mask for every row).
    rows: int = 1
    #: Whether a kernel may cache tensors derived from this mask under its hash. Masks built from
    #: data (document ids) are new every batch; caching them would only fill memory.
    cacheable: bool = True

    def mask_mod(self, b: Tensor, h: Tensor, q: Tensor, kv: Tensor) -> Tensor:
        raise NotImplementedError

    def check(self, q_len: int, kv_len: int) -> None:
        """Raise ValueError naming the bad value when the mask cannot cover a q_len x kv_len score."""

    def materialize(self, q_len: int, kv_len: int, device: torch.device | str | None = None) -> Tensor:
        """Dense bool tensor of shape (q_len, kv_len), or (rows, q_len, kv_len) for per-row masks."""
        self.check(q_len, kv_len)
        b = torch.arange(self.rows, device=device).view(-1, 1, 1)
        q = torch.arange(q_len, device=device).view(1, -1, 1)
        kv = torch.arange(kv_len, device=device).view(1, 1, -1)
        dense = self.mask_mod(b, torch.zeros((), dtype=torch.long, device=device), q, kv)
        dense = dense.expand(self.rows, q_len, kv_len)
        return dense[0] if self.rows == 1 else dense

    def padded(self, q_len: int, kv_len: int, total: int, device: torch.device | str | None = None) -> Tensor:
        """The mask over `total` >= kv_len keys, those past kv_len hidden, shaped for SDPA: (rows, 1,
        q_len, total). A fixed-shape forward attends over a whole preallocated cache with it, so its
        shapes stay the same from step to step while kv_len grows."""
        if total < kv_len:
            raise ValueError(f"a padded mask needs total >= kv_len, got total={total}, kv_len={kv_len}")
        dense = self.materialize(q_len, kv_len, device=device)
        dense = dense.expand(self.rows, q_len, kv_len) if dense.dim() == 2 else dense
        padded = torch.zeros(self.rows, 1, q_len, total, dtype=torch.bool, device=device)
        padded[:, 0, :, :kv_len] = dense
        return padded

    def xformers_bias(self, q_len: int, kv_len: int) -> Any | None:
        """An xformers AttentionBias for this mask, or None when xformers has no structured one (the
        xformers backend then passes the materialized mask as a tensor bias). Only the xformers
        backend calls this, after its availability probe, so the import inside is safe."""
        return None

    def __and__(self, other: Mask) -> Mask:
        from dlm.attention.masks.combinators import And

        return And((self, other))

    def __or__(self, other: Mask) -> Mask:
        from dlm.attention.masks.combinators import Or

        return Or((self, other))

    def __str__(self) -> str:
        fields = ", ".join(f"{f.name}={getattr(self, f.name)}" for f in dataclasses.fields(self))
        return f"{type(self).__name__}({fields})"


def require_square(mask: Mask, q_len: int, kv_len: int) -> None:
    if q_len != kv_len:
        raise ValueError(
            f"{mask} is a self-attention mask and needs q_len == kv_len, got q_len={q_len}, kv_len={kv_len}"
        )


def require_positive(name: str, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
