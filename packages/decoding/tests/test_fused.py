"""Fused and quadratic self-speculation: AR greedy output, the reference, honest forward counts."""

import pytest
import reference_decoding as reference
import torch

from dlm.decoding import ARDecoder, FusedSelfSpeculativeDecoder


@pytest.mark.parametrize("quadratic", [False, True], ids=["fused", "quadratic"])
@pytest.mark.parametrize("k", [1, 2, 4])
def test_greedy_equals_ar_greedy(model, prompts, quadratic, k):
    ar, _ = ARDecoder().generate(model, prompts, 15)
    tokens, stats = FusedSelfSpeculativeDecoder(k=k, quadratic=quadratic).generate(model, prompts, 15)
    assert tokens == ar
    assert sum(stats.accepted) == stats.tokens


@pytest.mark.parametrize("quadratic", [False, True], ids=["fused", "quadratic"])
@pytest.mark.parametrize("temperature", [0.0, 1.0], ids=["greedy", "sampled"])
def test_matches_reference(model, prompts, quadratic, temperature):
    decoder = FusedSelfSpeculativeDecoder(k=3, quadratic=quadratic, temperature=temperature, seed=2)
    for prompt in prompts:
        tokens, stats = decoder.generate(model, [prompt], 14)
        ref = reference.fused(decoder, model, prompt, 14)
        assert tokens == [ref.tokens]
        assert stats.accepted == ref.accepted
        assert stats.forwards == ref.forwards


def test_quadratic_costs_one_forward_per_verify_step(model, prompts):
    """After the first (draft-only) forward every forward verifies; plain fused adds a draft forward
    after each rejection."""
    for prompt in prompts:
        _, quad = FusedSelfSpeculativeDecoder(k=3, quadratic=True).generate(model, [prompt], 12)
        assert quad.forwards["target"] == len(quad.accepted) + 1
        _, plain = FusedSelfSpeculativeDecoder(k=3).generate(model, [prompt], 12)
        assert plain.forwards["target"] >= len(plain.accepted) + 1


@pytest.mark.parametrize("quadratic", [False, True], ids=["fused", "quadratic"])
def test_batch_equals_rows_one_by_one(model, prompts, quadratic):
    decoder = FusedSelfSpeculativeDecoder(k=3, quadratic=quadratic)
    batched = decoder.decode(model, prompts, 13)
    single = [decoder.decode(model, [p], 13) for p in prompts]
    assert batched.tokens == [s.tokens[0] for s in single]
    assert batched.stats.forwards == {"target": sum(s.stats.forwards["target"] for s in single)}


@pytest.mark.parametrize("quadratic", [False, True], ids=["fused", "quadratic"])
def test_cache_holds_the_committed_text_exactly(model, prompts, quadratic):
    result = FusedSelfSpeculativeDecoder(k=3, quadratic=quadratic).decode(model, prompts, 11)
    cache = result.caches["target"]
    for r, (prompt, out) in enumerate(zip(prompts, result.tokens, strict=True)):
        text = (prompt + out)[: cache.lengths[r]]
        k, v = reference.clean_kv(model, text, reference.clean_table(len(text), 0))
        torch.testing.assert_close(torch.stack(cache.k)[:, r, :, : len(text)], k, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(torch.stack(cache.v)[:, r, :, : len(text)], v, rtol=1e-10, atol=1e-10)


@pytest.mark.slow  # the session's trained model takes ~5-20 s to train once
@pytest.mark.parametrize("quadratic", [False, True], ids=["fused", "quadratic"])
def test_trained_model_reaches_k_plus_one_tokens_per_forward(trained, quadratic):
    prompts = [[1, 2, 3], [5, 8, 11], [7, 8, 9, 10]]
    ar, _ = ARDecoder().generate(trained, prompts, 24)
    tokens, stats = FusedSelfSpeculativeDecoder(k=3, quadratic=quadratic).generate(trained, prompts, 24)
    assert tokens == ar
    # The first forward's cross-block draft (a 4th draft) may miss: training blocks always start
    # after a multiple of 4 tokens, this prompt's first block after 2. The k drafts are always right.
    assert stats.acceptance_by_position[:3] == [1.0, 1.0, 1.0]
    assert stats.tpf >= 3.0  # k + 1 = 4 per forward, less the first draft forward and the budget cut
