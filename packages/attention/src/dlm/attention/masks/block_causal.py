"""Block-causal self-attention: allowed(q, k) = blk(k) <= blk(q), blk(i) = i // B."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from dlm.attention.masks.base import Mask, require_positive, require_square


@dataclass(frozen=True)
class BlockCausal(Mask):
    block_size: int

    def __post_init__(self) -> None:
        require_positive("block_size", self.block_size)

    def check(self, q_len: int, kv_len: int) -> None:
        require_square(self, q_len, kv_len)

    def mask_mod(self, b: Tensor, h: Tensor, q: Tensor, kv: Tensor) -> Tensor:
        return kv // self.block_size <= q // self.block_size
