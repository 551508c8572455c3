"""Full attention: every query sees every key."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from dlm.attention.masks.base import Mask


@dataclass(frozen=True)
class Bidirectional(Mask):
    def mask_mod(self, b: Tensor, h: Tensor, q: Tensor, kv: Tensor) -> Tensor:
        return (q >= 0) & (kv >= 0)
