"""Segments: per-row, per-query visibility of a block of new queries over a KV cache.

A decoder that does several things in one forward (verify a block and draft the next; commit a
finished block and draft the next one; draft one candidate block per acceptance length) lays each
row out as segments of new tokens; dlm.decoding.layout builds this mask from them. A forward whose
rows all hold one segment of the same width is exactly `Verify` (causal) or `Draft`
(bidirectional), and the layout uses those instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from dlm.attention.masks.base import Mask


@dataclass(frozen=True)
class Segments(Mask):
    """Query i of row r sees keys kv < P_r (the cached prefix) and new token k = kv - P_r when
    k < sees[r][i], or lo[r][i] <= k < hi[r][i] and (k <= i or not causal[r][i]).
    The key axis has length max(P) + width, as for Draft and Verify.
    """

    prefix_lens: tuple[int, ...]
    sees: tuple[tuple[int, ...], ...]
    lo: tuple[tuple[int, ...], ...]
    hi: tuple[tuple[int, ...], ...]
    causal: tuple[tuple[bool, ...], ...]

    # Nearly every decoding step builds a new one: kernels should not cache tensors derived from it.
    cacheable = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "rows", len(self.prefix_lens))
        # The tables as tensors, per device, built outside mask_mod: FlexAttention traces mask_mod
        # and cannot build tensor constants inside it. Not fields: no role in eq or hash.
        object.__setattr__(self, "_tables_by_device", {})

    def _tables(self, device: torch.device) -> tuple[Tensor, ...]:
        tables = self._tables_by_device.get(device)
        if tables is None:
            fields = (self.prefix_lens, self.sees, self.lo, self.hi, self.causal)
            tables = tuple(torch.tensor(f, device=device) for f in fields)
            self._tables_by_device[device] = tables
        return tables

    @property
    def width(self) -> int:
        return len(self.sees[0])

    def check(self, q_len: int, kv_len: int) -> None:
        expected = max(self.prefix_lens) + self.width
        if q_len != self.width or kv_len != expected:
            raise ValueError(
                f"Segments mask expects q_len={self.width}, kv_len={expected}, got q_len={q_len}, kv_len={kv_len}"
            )

    def mask_mod(self, b: Tensor, h: Tensor, q: Tensor, kv: Tensor) -> Tensor:
        prefix, sees, lo, hi, causal = self._tables(kv.device)
        p = prefix[b]
        k = kv - p
        own = (k >= lo[b, q]) & (k < hi[b, q]) & (~causal[b, q] | (k <= q))
        return (kv < p) | ((k >= 0) & ((k < sees[b, q]) | own))
