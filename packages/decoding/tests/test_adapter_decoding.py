"""Decoding with a draft adapter: draft forwards are marked and use it, every other forward is the
base's, so AR decoding is the base's exactly and speculation stays lossless against the base."""

import torch
from adapters import with_adapter

from dlm.decoding import (
    ARDecoder,
    BlockDiffusionDecoder,
    FusedSelfSpeculativeDecoder,
    SelfSpeculativeDecoder,
)
from dlm.decoding.layout import Layout


def test_draft_segments_are_the_gate():
    layout = Layout([3, 5])
    layout.add(0, [1, 2, 3], 3, causal=True)
    layout.add(0, [3, 9, 9], 4, causal=False, sees=1, draft=True)
    layout.add(1, [4, 9, 9], 5, causal=False, draft=True)
    _, _, _, gate = layout.build(torch.device("cpu"))
    assert gate.tolist() == [[False] * 3 + [True] * 3, [True] * 3 + [False] * 3]
    plain = Layout([2])
    plain.add(0, [1], 2, causal=True)
    assert plain.build(torch.device("cpu"))[3] is None


def test_ar_decoding_is_the_base_exactly(model, prompts):
    adapted = with_adapter(model)
    base_tokens, _ = ARDecoder().generate(model, prompts, 12)
    assert ARDecoder().generate(adapted, prompts, 12)[0] == base_tokens
    for decoder in (
        SelfSpeculativeDecoder(k=3),
        FusedSelfSpeculativeDecoder(k=3),
        FusedSelfSpeculativeDecoder(k=3, quadratic=True),
    ):
        tokens, stats = decoder.generate(adapted, prompts, 12)
        assert tokens == base_tokens, type(decoder).__name__
        # the drafts came from the adapter: the base drafts otherwise
        _, base_stats = decoder.generate(model, prompts, 12)
        assert stats.position_accepts != base_stats.position_accepts or stats.accepted != base_stats.accepted


def test_block_diffusion_drafts_with_the_adapter(model, prompts):
    adapted = with_adapter(model)
    decoder = BlockDiffusionDecoder(block_size=4, threshold=1.0)
    assert decoder.generate(adapted, prompts, 8)[0] != decoder.generate(model, prompts, 8)[0]
