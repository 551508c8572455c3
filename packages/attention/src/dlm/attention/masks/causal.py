"""Token-causal self-attention: allowed(q, k) = k <= q."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from dlm.attention.masks.base import Mask, require_square


@dataclass(frozen=True)
class Causal(Mask):
    def check(self, q_len: int, kv_len: int) -> None:
        require_square(self, q_len, kv_len)

    def mask_mod(self, b: Tensor, h: Tensor, q: Tensor, kv: Tensor) -> Tensor:
        return kv <= q

    def xformers_bias(self, q_len: int, kv_len: int):
        from xformers.ops import fmha

        return fmha.attn_bias.LowerTriangularMask()
