"""The x_t (+) x_0 training masks over a 2L sequence: noisy half first, clean half second.

Both halves use positions 0..L-1. Let n(i) = i < L (noisy), j = i mod L, blk(j) = j // B.
BlockDiffusion (BD3-LM):  noisy block sees itself and the clean blocks before it; the clean half is
block-causal. TriMode (trimode.py) is the same with a token-causal clean half.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from dlm.attention.masks.base import Mask, require_positive


@dataclass(frozen=True)
class BlockDiffusion(Mask):
    block_size: int
    seq_len: int

    def __post_init__(self) -> None:
        require_positive("block_size", self.block_size)
        require_positive("seq_len", self.seq_len)

    def check(self, q_len: int, kv_len: int) -> None:
        if q_len != 2 * self.seq_len or kv_len != 2 * self.seq_len:
            raise ValueError(
                f"{self} covers [x_t ; x_0] of length {2 * self.seq_len}, got q_len={q_len}, kv_len={kv_len}"
            )

    def clean_allowed(self, jq: Tensor, jk: Tensor) -> Tensor:
        return jk // self.block_size <= jq // self.block_size

    def mask_mod(self, b: Tensor, h: Tensor, q: Tensor, kv: Tensor) -> Tensor:
        L, B = self.seq_len, self.block_size
        nq, nk = q < L, kv < L
        jq, jk = q % L, kv % L
        bq, bk = jq // B, jk // B
        noisy_self = nq & nk & (bq == bk)
        noisy_to_clean = nq & ~nk & (bk < bq)
        clean = ~nq & ~nk & self.clean_allowed(jq, jk)
        return noisy_self | noisy_to_clean | clean
