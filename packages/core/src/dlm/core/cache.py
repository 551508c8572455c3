"""Preallocated per-layer KV cache with per-row lengths.

Each layer has its own (batch, kv_heads, max_len, head_dim) buffers, so a compiled forward writes
them in place (slices of one shared buffer would make torch.compile copy it whole at every write).
Row r keeps its committed tokens in slots [0, length_r). A forward over q new tokens writes their K/V
into slots [length_r, length_r + q) of every layer and attends over slots [0, max(length) + q): the
mask (dlm.attention Draft/Verify) hides each row's unused slots. Committing advances every row by q;
not committing leaves the lengths alone, so the written slots stay scratch space and the committed
prefix is untouched (the draft pass). `crop` rolls rows back after rejected tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class Slots:
    """Where one forward's q new tokens go; computed once per forward, shared by all layers."""

    start: int | None  # the common offset when every row has the same length, else None
    index: Tensor | None  # (batch, q) slot per new token when rows differ
    view_len: int  # keys attended: max(length) + q


class KVCache:
    def __init__(
        self,
        n_layers: int,
        batch: int,
        kv_heads: int,
        head_dim: int,
        max_len: int,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> None:
        if batch <= 0 or max_len <= 0:
            raise ValueError(f"KVCache needs batch > 0 and max_len > 0, got batch={batch}, max_len={max_len}")
        shape = (batch, kv_heads, max_len, head_dim)
        self.k = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(n_layers)]
        self.v = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(n_layers)]
        self._lengths = [0] * batch

    @property
    def batch(self) -> int:
        return self.k[0].shape[0]

    @property
    def max_len(self) -> int:
        return self.k[0].shape[2]

    @property
    def dtype(self) -> torch.dtype:
        return self.k[0].dtype

    @property
    def device(self) -> torch.device:
        return self.k[0].device

    @property
    def lengths(self) -> list[int]:
        """Committed tokens per row (a copy)."""
        return list(self._lengths)

    def prepare(self, q_len: int) -> Slots:
        """Check that q_len more tokens fit in every row and compute their slots."""
        view_len = max(self._lengths) + q_len
        if len(set(self._lengths)) == 1:
            self._check(q_len)
            return Slots(start=self._lengths[0], index=None, view_len=view_len)
        return Slots(start=None, index=self.slot_index(q_len), view_len=view_len)

    def slot_index(self, q_len: int) -> Tensor:
        """(batch, q_len): the slots q_len more tokens go to in each row, after the overflow check."""
        self._check(q_len)
        starts = torch.tensor(self._lengths, device=self.device).unsqueeze(1)
        return starts + torch.arange(q_len, device=self.device)

    def _check(self, q_len: int) -> None:
        for row, length in enumerate(self._lengths):
            if length + q_len > self.max_len:
                raise ValueError(
                    f"KV cache overflow: row {row} holds {length} tokens, {q_len} more exceed max_len={self.max_len}"
                )

    def write(self, layer: int, k: Tensor, v: Tensor, slots: Slots) -> tuple[Tensor, Tensor]:
        """Store k, v (batch, kv_heads, q, head_dim) in their slots; return this layer's keys and values
        over [0, view_len)."""
        k_store, v_store = self.k[layer], self.v[layer]
        if slots.start is not None:
            end = slots.start + k.shape[2]
            k_store[:, :, slots.start : end] = k
            v_store[:, :, slots.start : end] = v
        else:
            write_rows(k_store, v_store, k, v, slots.index)
        return k_store[:, :, : slots.view_len], v_store[:, :, : slots.view_len]

    def advance(self, q_len: int) -> None:
        self._lengths = [length + q_len for length in self._lengths]

    def crop(self, lengths: Sequence[int] | Tensor | int) -> None:
        """Roll rows back to the given lengths (an int applies to every row); never forward."""
        if isinstance(lengths, int):
            lengths = [lengths] * self.batch
        new = [int(x) for x in (lengths.tolist() if isinstance(lengths, Tensor) else lengths)]
        if len(new) != self.batch:
            raise ValueError(f"crop needs {self.batch} lengths, got {len(new)}")
        for row, (old, length) in enumerate(zip(self._lengths, new, strict=True)):
            if not 0 <= length <= old:
                raise ValueError(
                    f"cannot crop row {row} to {length}: it holds {old} tokens (crop never grows)"
                )
        self._lengths = new

    def reset(self) -> None:
        self._lengths = [0] * self.batch


def write_rows(k_store: Tensor, v_store: Tensor, k: Tensor, v: Tensor, index: Tensor) -> None:
    """k, v (batch, kv_heads, q, head_dim) into slots index (batch, q) of each row's store."""
    rows = torch.arange(k.shape[0], device=k.device).unsqueeze(1)
    k_store[rows, :, index] = k.transpose(1, 2)
    v_store[rows, :, index] = v.transpose(1, 2)


class FixedView:
    """A KVCache seen by one fixed-shape forward (dlm.core.compiled): the slots come in as a tensor
    and every layer attends over its whole buffer, so nothing the forward sees changes shape or
    Python value from step to step and one compiled graph serves them all. The mask hides the slots
    past each row's keys; the caller advances the KVCache."""

    def __init__(self, k: list[Tensor], v: list[Tensor], index: Tensor) -> None:
        self.k, self.v, self.index = k, v, index

    def prepare(self, q_len: int) -> Slots:
        return Slots(start=None, index=self.index, view_len=self.k[0].shape[2])

    def write(self, layer: int, k: Tensor, v: Tensor, slots: Slots) -> tuple[Tensor, Tensor]:
        write_rows(self.k[layer], self.v[layer], k, v, slots.index)
        return self.k[layer], self.v[layer]


class PrefixCache:
    """The K/V of one prefix forward, kept per layer as the tensors it made (no preallocated buffer,
    no in-place writes), for training: a later forward with commit=False attends over [prefix ;
    itself] and gradients flow through its own K/V. (Writing a grad-carrying forward into KVCache's
    one buffer would bump the version of every layer's view and break the backward.)"""

    def __init__(self) -> None:
        self.k: dict[int, Tensor] = {}
        self.v: dict[int, Tensor] = {}
        self.length = 0

    def prepare(self, q_len: int) -> Slots:
        return Slots(start=self.length, index=None, view_len=self.length + q_len)

    def write(self, layer: int, k: Tensor, v: Tensor, slots: Slots) -> tuple[Tensor, Tensor]:
        if self.length == 0:
            self.k[layer], self.v[layer] = k, v
            return k, v
        return torch.cat([self.k[layer], k], dim=2), torch.cat([self.v[layer], v], dim=2)

    def advance(self, q_len: int) -> None:
        if self.length:
            raise ValueError("PrefixCache holds one prefix: commit only the first forward")
        self.length = q_len
