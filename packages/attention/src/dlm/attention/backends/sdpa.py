"""The reference backend: torch SDPA with the materialized dense mask. Works everywhere."""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import Tensor

from dlm.attention.backends.base import Backend
from dlm.attention.masks import Bidirectional, Causal, Mask


class SDPA(Backend):
    name = "sdpa"
    devices = frozenset({"cpu", "cuda", "mps", "xpu"})
    dtypes = frozenset({torch.float16, torch.bfloat16, torch.float32, torch.float64})

    def describe(self) -> str:
        return "masks: every mask (is_causal for Causal, none for Bidirectional, the dense mask otherwise)"

    def forward(self, q: Tensor, k: Tensor, v: Tensor, mask: Mask) -> Tensor:
        gqa = q.shape[1] != k.shape[1]
        if isinstance(mask, Causal):
            return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=gqa)
        if isinstance(mask, Bidirectional):
            return F.scaled_dot_product_attention(q, k, v, enable_gqa=gqa)
        if mask.cacheable:
            dense = _cached_dense_mask(mask, q.shape[2], k.shape[2], q.device)
        else:
            dense = dense_mask(mask, q.shape[2], k.shape[2], q.device)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=dense, enable_gqa=gqa)


def dense_mask(mask: Mask, q_len: int, kv_len: int, device: torch.device) -> Tensor:
    """The materialized mask shaped for SDPA: (q, kv), or (rows, 1, q, kv) for per-row masks."""
    dense = mask.materialize(q_len, kv_len, device=device)
    return dense.unsqueeze(1) if dense.dim() == 3 else dense


# Cached per (mask, shape, device): masks are frozen values. Data-built masks (cacheable False) skip
# the cache, so new document ids can never be answered with an old batch's mask.
_cached_dense_mask = functools.lru_cache(maxsize=64)(dense_mask)
