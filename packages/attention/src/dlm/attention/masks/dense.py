"""Dense: a mask given as a (q_len, kv_len) bool table, for masks written out element by element
(the no-cache reference decoders build one per step)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from dlm.attention.masks.base import Mask


@dataclass(frozen=True, eq=False)
class Dense(Mask):
    """allowed(q, kv) = table[q, kv]. Compared and hashed by identity (a tensor has no value hash)."""

    table: Tensor

    cacheable = False  # usually a new one every step

    def check(self, q_len: int, kv_len: int) -> None:
        if (q_len, kv_len) != tuple(self.table.shape):
            raise ValueError(f"Dense mask of shape {tuple(self.table.shape)} cannot cover {q_len} x {kv_len}")

    def mask_mod(self, b: Tensor, h: Tensor, q: Tensor, kv: Tensor) -> Tensor:
        return self.table.to(kv.device)[q, kv]
