"""Masks for a block of K new queries over a KV cache holding P committed tokens per row.

The cache lays row r out as [P_r committed tokens, K new tokens, unused slots], so the key axis has
length max(P) + K and slots past P_r + K are padding. Both masks let the block see the whole
committed prefix of its row; they differ inside the block.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from dlm.attention.masks.base import Mask, require_positive


@dataclass(frozen=True)
class _CachedBlock(Mask):
    prefix_lens: tuple[int, ...]
    block: int

    def __post_init__(self) -> None:
        if isinstance(self.prefix_lens, int):
            object.__setattr__(self, "prefix_lens", (self.prefix_lens,))
        object.__setattr__(self, "prefix_lens", tuple(int(p) for p in self.prefix_lens))
        require_positive("block", self.block)
        if not self.prefix_lens or min(self.prefix_lens) < 0:
            raise ValueError(f"prefix_lens must be non-negative per row, got {self.prefix_lens}")
        object.__setattr__(self, "rows", len(self.prefix_lens))

    @property
    def kv_len(self) -> int:
        return max(self.prefix_lens) + self.block

    def check(self, q_len: int, kv_len: int) -> None:
        if q_len != self.block or kv_len != self.kv_len:
            raise ValueError(
                f"{self} expects q_len={self.block}, kv_len={self.kv_len}, got q_len={q_len}, kv_len={kv_len}"
            )

    def _prefix(self, b: Tensor, like: Tensor) -> Tensor:
        return torch.tensor(self.prefix_lens, device=like.device)[b]

    def inner(self, q: Tensor, k: Tensor) -> Tensor:
        raise NotImplementedError

    def mask_mod(self, b: Tensor, h: Tensor, q: Tensor, kv: Tensor) -> Tensor:
        p = self._prefix(b, kv)
        k = kv - p
        return (kv < p) | ((k >= 0) & (k < self.block) & self.inner(q, k))


@dataclass(frozen=True)
class Draft(_CachedBlock):
    """allowed(q, k) = k < P or the key is in the block (bidirectional within the block)."""

    def inner(self, q: Tensor, k: Tensor) -> Tensor:
        return k >= 0


@dataclass(frozen=True)
class Verify(_CachedBlock):
    """allowed(q, k) = k < P or k - P <= q (causal within the block)."""

    def inner(self, q: Tensor, k: Tensor) -> Tensor:
        return k <= q
