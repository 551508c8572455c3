"""TriMode (Nemotron "sbd"): the BlockDiffusion mask over [x_t ; x_0] with a token-causal clean half,
so one forward gives diffusion logits on the noisy half and autoregressive logits on the clean half.

With j = i mod L as in block_diffusion.py: a noisy block sees itself and the clean blocks before it;
a clean query sees the clean keys at or before it.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from dlm.attention.masks.base import Mask, require_positive
from dlm.attention.masks.block_diffusion import BlockDiffusion


@dataclass(frozen=True)
class TriMode(BlockDiffusion):
    # A subclass, so the kernels that run BlockDiffusion's layout (split) take it too.
    def clean_allowed(self, jq: Tensor, jk: Tensor) -> Tensor:
        return jk <= jq


@dataclass(frozen=True)
class TriModeNoisy(Mask):
    """The noisy rows of TriMode(B, L) with the clean half already in a KV cache: L noisy queries over
    keys [x_0 (cached, L) ; x_t (L)]. allowed(q, k) = blk(k) < blk(q) for a clean key, blk(k - L) =
    blk(q) for a noisy one: TriMode's noisy rows with its key halves swapped. A frozen base computes
    the clean half once without gradients (a draft adapter leaves it the base's), and this mask
    trains the noisy half against it. Packed documents: AND SameDocument.for_noisy_clean(doc_ids)."""

    block_size: int
    seq_len: int

    def __post_init__(self) -> None:
        require_positive("block_size", self.block_size)
        require_positive("seq_len", self.seq_len)

    def check(self, q_len: int, kv_len: int) -> None:
        if q_len != self.seq_len or kv_len != 2 * self.seq_len:
            raise ValueError(
                f"{self} covers {self.seq_len} noisy queries over {2 * self.seq_len} keys [x_0 ; x_t], "
                f"got q_len={q_len}, kv_len={kv_len}"
            )

    def mask_mod(self, b: Tensor, h: Tensor, q: Tensor, kv: Tensor) -> Tensor:
        L, B = self.seq_len, self.block_size
        clean = kv < L
        return (clean & (kv // B < q // B)) | (~clean & ((kv - L) // B == q // B))
