"""AND / OR composition of masks (e.g. a pattern AND a same-document mask for packed sequences)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from dlm.attention.masks.base import Mask


def _settle(combined: Mask, parts: tuple[Mask, ...]) -> None:
    """Flatten nested combinators of the same kind, then derive rows and cacheability from the parts."""
    flat: list[Mask] = []
    for p in parts:
        if not isinstance(p, Mask):
            raise ValueError(f"{type(combined).__name__} combines Mask objects, got {p!r}")
        flat.extend(p.parts if type(p) is type(combined) else (p,))
    counts = {p.rows for p in flat} - {1}
    if len(counts) > 1:
        raise ValueError(f"cannot combine masks with different row counts {sorted(counts)}")
    object.__setattr__(combined, "parts", tuple(flat))
    object.__setattr__(combined, "rows", counts.pop() if counts else 1)
    object.__setattr__(combined, "cacheable", all(p.cacheable for p in flat))


@dataclass(frozen=True)
class And(Mask):
    parts: tuple[Mask, ...]

    def __post_init__(self) -> None:
        _settle(self, tuple(self.parts))

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
        _settle(self, tuple(self.parts))

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
