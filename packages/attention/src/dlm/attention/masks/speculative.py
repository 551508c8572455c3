"""Masks for a block of K new queries over a KV cache holding P committed tokens per row.

The cache lays row r out as [P_r committed tokens, K new tokens, unused slots], so the key axis has
length max(P) + K and slots past P_r + K are padding. Both masks let the block see the whole
committed prefix of its row; they differ inside the block.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from dlm.attention.masks.base import Mask, require_positive


@dataclass(frozen=True)
class _CachedBlock(Mask):
    prefix_lens: tuple[int, ...]
    block: int

    def __post_init__(self) -> None:
        if isinstance(self.prefix_lens, int):
            object.__setattr__(self, "prefix_lens", (self.prefix_lens,))
        object.__setattr__(self, "prefix_lens", tuple(int(p) for p in self.prefix_lens))
        require_positive("block", self.block)
        if not self.prefix_lens or min(self.prefix_lens) < 0:
            raise ValueError(f"prefix_lens must be non-negative per row, got {self.prefix_lens}")
        object.__setattr__(self, "rows", len(self.prefix_lens))
        # Prefix lengths as a tensor per device, made outside any compiled region: FlexAttention
        # traces mask_mod and cannot build a tensor constant inside it. Not a field: no eq/hash role.
        object.__setattr__(self, "_prefix_by_device", {})

    @property
    def kv_len(self) -> int:
        return max(self.prefix_lens) + self.block

    def check(self, q_len: int, kv_len: int) -> None:
        if q_len != self.block or kv_len != self.kv_len:
            raise ValueError(
                f"{self} expects q_len={self.block}, kv_len={self.kv_len}, got q_len={q_len}, kv_len={kv_len}"
            )

    def _prefix(self, b: Tensor, like: Tensor) -> Tensor:
        table = self._prefix_by_device.get(like.device)
        if table is None:
            table = torch.tensor(self.prefix_lens, device=like.device)
            self._prefix_by_device[like.device] = table
        return table[b]

    def inner(self, q: Tensor, k: Tensor) -> Tensor:
        raise NotImplementedError

    def mask_mod(self, b: Tensor, h: Tensor, q: Tensor, kv: Tensor) -> Tensor:
        p = self._prefix(b, kv)
        k = kv - p
        return (kv < p) | ((k >= 0) & (k < self.block) & self.inner(q, k))

    def _padded_keys_bias(self, bias_type: Any, kv_len: int) -> Any:
        # Rows flattened into one sequence: row r owns key slots [r * kv_len, (r + 1) * kv_len), of
        # which its first P_r + K are in use; its K queries follow each other without padding.
        return bias_type.from_seqlens(
            q_seqlen=[self.block] * self.rows,
            kv_padding=kv_len,
            kv_seqlen=[p + self.block for p in self.prefix_lens],
        )


@dataclass(frozen=True)
class Draft(_CachedBlock):
    """allowed(q, k) = k < P or the key is in the block (bidirectional within the block)."""

    def inner(self, q: Tensor, k: Tensor) -> Tensor:
        return k >= 0

    def xformers_bias(self, q_len: int, kv_len: int) -> Any:
        from xformers.ops.fmha.attn_bias import BlockDiagonalPaddedKeysMask

        return self._padded_keys_bias(BlockDiagonalPaddedKeysMask, kv_len)


@dataclass(frozen=True)
class Verify(_CachedBlock):
    """allowed(q, k) = k < P or k - P <= q (causal within the block)."""

    def inner(self, q: Tensor, k: Tensor) -> Tensor:
        return k <= q

    def xformers_bias(self, q_len: int, kv_len: int) -> Any:
        # Causal "from the bottom right" of each row's used keys: query i sees keys <= P_r + i.
        from xformers.ops.fmha.attn_bias import BlockDiagonalCausalWithOffsetPaddedKeysMask

        return self._padded_keys_bias(BlockDiagonalCausalWithOffsetPaddedKeysMask, kv_len)
