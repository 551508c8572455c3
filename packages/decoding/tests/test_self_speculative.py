"""SelfSpeculativeDecoder: equals AR greedy, matches its no-cache reference, batches exactly."""

import warnings

import pytest
import reference_decoding as reference
import torch
from reference_decoding import causal_logits

from dlm.core.protocols import Decoder
from dlm.decoding import ARDecoder, FusedSelfSpeculativeDecoder, SelfSpeculativeDecoder


@pytest.mark.parametrize("k", [1, 3, 5])
def test_greedy_equals_ar_greedy_in_float64(model, prompts, k):
    ar, _ = ARDecoder().generate(model, prompts, 16)
    tokens, stats = SelfSpeculativeDecoder(k=k).generate(model, prompts, 16)
    assert tokens == ar
    assert sum(stats.accepted) == stats.tokens == 64
    assert stats.forwards["target"] == 2 * len(stats.accepted)  # one draft + one verify per step


@pytest.mark.parametrize(
    "decoder",
    [
        SelfSpeculativeDecoder(k=3),
        SelfSpeculativeDecoder(k=2, temperature=1.0, seed=5),
        SelfSpeculativeDecoder(k=3, temperature=0.7, top_p=0.9, seed=1),
    ],
    ids=["greedy", "sampled", "top-p"],
)
def test_matches_reference(model, prompts, decoder):
    for prompt in prompts:
        tokens, stats = decoder.generate(model, [prompt], 14)
        ref = reference.speculative(decoder, model, prompt, 14)
        assert tokens == [ref.tokens]
        assert stats.accepted == ref.accepted
        assert stats.forwards == ref.forwards


def test_cross_block_draft_matches_reference(shifted, unshifted, prompts):
    decoder = SelfSpeculativeDecoder(k=2, cross_block=True)
    for prompt in prompts:
        tokens, stats = decoder.generate(shifted, [prompt], 12)
        ref = reference.speculative(decoder, shifted, prompt, 12)
        assert tokens == [ref.tokens] and stats.accepted == ref.accepted
    assert len(stats.position_trials) <= 3
    with pytest.raises(ValueError, match="cross_block=True needs a token-shift model"):
        decoder.generate(unshifted, prompts, 4)


def test_batch_equals_rows_one_by_one(model, prompts):
    decoder = SelfSpeculativeDecoder(k=3)
    batched = decoder.decode(model, prompts, 13)
    single = [decoder.decode(model, [p], 13) for p in prompts]
    assert batched.tokens == [s.tokens[0] for s in single]
    assert sorted(batched.stats.accepted) == sorted(a for s in single for a in s.stats.accepted)
    assert batched.stats.forwards == {"target": sum(s.stats.forwards["target"] for s in single)}
    assert batched.stats.calls["target"] == max(s.stats.calls["target"] for s in single)


def test_cache_holds_the_committed_text_exactly(model, prompts):
    result = SelfSpeculativeDecoder(k=3).decode(model, prompts, 11)
    cache = result.caches["target"]
    for r, (prompt, out) in enumerate(zip(prompts, result.tokens, strict=True)):
        text = (prompt + out)[: cache.lengths[r]]
        assert len(text) == cache.lengths[r] >= len(prompt)
        k, v = reference.clean_kv(model, text, reference.clean_table(len(text), 0))
        torch.testing.assert_close(torch.stack(cache.k)[:, r, :, : len(text)], k, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(torch.stack(cache.v)[:, r, :, : len(text)], v, rtol=1e-10, atol=1e-10)


def test_position_stats_count_checks_and_accepts(model, prompts):
    _, stats = SelfSpeculativeDecoder(k=3).generate(model, prompts, 12)
    assert len(stats.position_trials) == 3
    assert stats.position_trials[0] == len(stats.accepted)
    assert all(a <= t for a, t in zip(stats.position_accepts, stats.position_trials, strict=True))
    assert stats.position_trials[1] == stats.position_accepts[0]


def first_difference(a: list[int], b: list[int]) -> int | None:
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), None)


@pytest.mark.parametrize(
    "decoder",
    [
        SelfSpeculativeDecoder(k=4),
        FusedSelfSpeculativeDecoder(k=4),
        FusedSelfSpeculativeDecoder(k=4, quadratic=True),
    ],
    ids=["self-spec", "fused", "quadratic"],
)
def test_float32_differs_from_ar_only_at_near_ties(make_model, prompts, decoder):
    """In float32 the batched verify and the one-token AR step round differently; outputs may only
    part where AR's two best logits are within rounding of each other. Detected and reported."""
    ties = []
    for seed in range(3):
        model = make_model(dtype=torch.float32, seed=seed, init_std=0.05)
        ar, _ = ARDecoder().generate(model, prompts, 16)
        spec, _ = decoder.generate(model, prompts, 16)
        for prompt, a, s in zip(prompts, ar, spec, strict=True):
            i = first_difference(a, s)
            if i is None:
                continue
            logits = causal_logits(model, prompt + a[:i])[-1].double()
            logits[model.config.mask_token_id] = float("-inf")
            top = logits.topk(2).values
            gap = float(top[0] - top[1])
            assert gap < 1e-4, f"seed {seed}: outputs part at token {i} where the AR logit gap is {gap}"
            ties.append((seed, i, gap))
    if ties:
        warnings.warn(
            f"float32 self-speculation parted from AR at near-ties (seed, token, gap): {ties}", stacklevel=1
        )


def test_decoders_implement_the_protocol(shifted):
    from dlm.decoding import BlockDiffusionDecoder, DrafterSpeculativeDecoder

    for decoder in (
        ARDecoder(),
        BlockDiffusionDecoder(),
        SelfSpeculativeDecoder(),
        FusedSelfSpeculativeDecoder(),
    ):
        assert isinstance(decoder, Decoder)
    assert isinstance(DrafterSpeculativeDecoder(shifted), Decoder)


@pytest.mark.slow  # the session's trained model takes ~5-20 s to train once
def test_trained_model_is_fully_accepted(trained):
    prompts = [[1, 2, 3], [5, 8, 11], [7, 8, 9, 10]]
    ar, _ = ARDecoder().generate(trained, prompts, 20)
    tokens, stats = SelfSpeculativeDecoder(k=3).generate(trained, prompts, 20)
    assert tokens == ar
    assert stats.acceptance_by_position == [1.0, 1.0, 1.0]
    assert stats.tau >= 3.9 and stats.tpf >= 1.9  # k + 1 tokens per step, two forwards per step
