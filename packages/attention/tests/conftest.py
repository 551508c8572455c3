"""Shared fixtures: the mask catalogue every backend is checked on, and the SDPA + materialize reference."""

import pytest
import torch
import torch.nn.functional as F

from dlm.attention import (
    Bidirectional,
    BlockCausal,
    BlockDiffusion,
    Causal,
    Draft,
    SameDocument,
    TriMode,
    Verify,
)

BATCH = 2


def _cases():
    ids = torch.tensor([[0, 0, 0, 1, 1, 1, 1, 2, 2, 2], [0, 1, 1, 1, 1, 1, 1, 1, 1, 1]])
    return [
        ("causal", Causal(), 10, 10),
        ("bidirectional", Bidirectional(), 10, 10),
        ("block_causal_ragged", BlockCausal(4), 10, 10),
        ("block_diffusion", BlockDiffusion(4, 8), 16, 16),
        ("block_diffusion_ragged", BlockDiffusion(4, 10), 20, 20),
        ("tri_mode_ragged", TriMode(3, 10), 20, 20),
        ("draft", Draft((3, 5), 4), 4, 9),
        ("verify", Verify((3, 5), 4), 4, 9),
        ("same_document", SameDocument(ids), 10, 10),
        ("block_diffusion_and_docs", BlockDiffusion(4, 10) & SameDocument.for_noisy_clean(ids), 20, 20),
        ("causal_or_block_causal", Causal() | BlockCausal(3), 10, 10),
    ]


@pytest.fixture
def mask_cases():
    """(name, mask, q_len, kv_len) for every mask family; per-row masks have BATCH rows."""
    return _cases()


def sdpa_reference(q, k, v, mask):
    dense = mask.materialize(q.shape[2], k.shape[2], device=q.device)
    dense = dense[:, None] if dense.dim() == 3 else dense
    return F.scaled_dot_product_attention(q, k, v, attn_mask=dense, enable_gqa=q.shape[1] != k.shape[1])


@pytest.fixture
def reference():
    """softmax with the materialized mask through torch SDPA: what every backend must reproduce."""
    return sdpa_reference


@pytest.fixture
def qkv():
    """Random (q, k, v) for a case: 4 query heads over 2 key/value heads (GQA), head_dim 16."""

    def make(q_len, kv_len, device="cpu", dtype=torch.float32, requires_grad=False, seed=0):
        g = torch.Generator().manual_seed(seed)
        shapes = [(BATCH, 4, q_len, 16), (BATCH, 2, kv_len, 16), (BATCH, 2, kv_len, 16)]
        return [
            torch.randn(s, generator=g).to(device=device, dtype=dtype).requires_grad_(requires_grad)
            for s in shapes
        ]

    return make
