"""AND / OR composition of masks (e.g. a pattern AND a same-document mask for packed sequences)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from dlm.attention.masks.base import Mask


def _rows(parts: tuple[Mask, ...]) -> int:
    counts = {p.rows for p in parts} - {1}
    if len(counts) > 1:
        raise ValueError(f"cannot combine masks with different row counts {sorted(counts)}")
    return counts.pop() if counts else 1


@dataclass(frozen=True)
class And(Mask):
    parts: tuple[Mask, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "rows", _rows(self.parts))

    def check(self, q_len: int, kv_len: int) -> None:
        for p in self.parts:
            p.check(q_len, kv_len)

    def mask_mod(self, b: Tensor, h: Tensor, q: Tensor, kv: Tensor) -> Tensor:
        out = self.parts[0].mask_mod(b, h, q, kv)
        for p in self.parts[1:]:
            out = out & p.mask_mod(b, h, q, kv)
        return out

    def __str__(self) -> str:
        return " & ".join(str(p) for p in self.parts)


@dataclass(frozen=True)
class Or(Mask):
    parts: tuple[Mask, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "rows", _rows(self.parts))

    def check(self, q_len: int, kv_len: int) -> None:
        for p in self.parts:
            p.check(q_len, kv_len)

    def mask_mod(self, b: Tensor, h: Tensor, q: Tensor, kv: Tensor) -> Tensor:
        out = self.parts[0].mask_mod(b, h, q, kv)
        for p in self.parts[1:]:
            out = out | p.mask_mod(b, h, q, kv)
        return out

    def __str__(self) -> str:
        return " | ".join(f"({p})" for p in self.parts)
