"""DrafterSpeculativeDecoder: an external diffusion drafter for an AR target, each with its own cache."""

import time

import pytest
import reference_decoding as reference
import torch

from dlm.decoding import ARDecoder, DrafterSpeculativeDecoder


@pytest.fixture(scope="module")
def target(make_model):
    return make_model(seed=7, n_layers=1, dim=48, n_heads=4, n_kv_heads=4)


@pytest.mark.parametrize("k", [1, 3])
def test_greedy_equals_target_ar_greedy(model, target, prompts, k):
    ar, _ = ARDecoder().generate(target, prompts, 15)
    tokens, stats = DrafterSpeculativeDecoder(model, k=k).generate(target, prompts, 15)
    assert tokens == ar
    assert stats.forwards["target"] == stats.forwards["drafter"] == len(stats.accepted)
    assert stats.tpf == stats.tau


@pytest.mark.parametrize(
    "settings",
    [dict(), dict(temperature=1.0, seed=9), dict(cross_block=True)],
    ids=["greedy", "sampled", "cross"],
)
def test_matches_reference(shifted, target, prompts, settings):
    decoder = DrafterSpeculativeDecoder(shifted, k=3, **settings)
    for prompt in prompts:
        tokens, stats = decoder.generate(target, [prompt], 14)
        ref = reference.speculative(decoder, target, prompt, 14, drafter=shifted)
        assert tokens == [ref.tokens]
        assert stats.accepted == ref.accepted
        assert stats.forwards == ref.forwards


@pytest.mark.parametrize("slow", ["drafter", "target"])
def test_time_is_split_by_model(model, target, prompts, slow):
    """A 20 ms sleep in one model's forward makes that model's share of the time most of it."""
    net = {"drafter": model, "target": target}[slow]
    hook = net.register_forward_hook(lambda *_: time.sleep(0.02))
    try:
        _, stats = DrafterSpeculativeDecoder(model, k=3).generate(target, prompts[:1], 8)
    finally:
        hook.remove()
    drafter, target_s = stats.forward_seconds["drafter"], stats.forward_seconds["target"]
    assert drafter + target_s <= stats.seconds
    assert stats.drafter_time_share == drafter / stats.seconds
    assert (stats.drafter_time_share > 0.5) == (slow == "drafter")


def test_batch_equals_rows_one_by_one(model, target, prompts):
    decoder = DrafterSpeculativeDecoder(model, k=3)
    batched = decoder.decode(target, prompts, 13)
    assert batched.tokens == [decoder.decode(target, [p], 13).tokens[0] for p in prompts]


def test_both_caches_hold_the_committed_text_exactly(model, target, prompts):
    result = DrafterSpeculativeDecoder(model, k=3).decode(target, prompts, 12)
    for name, net in (("target", target), ("drafter", model)):
        cache = result.caches[name]
        for r, (prompt, out) in enumerate(zip(prompts, result.tokens, strict=True)):
            text = (prompt + out)[: cache.lengths[r]]
            assert len(text) == cache.lengths[r] >= len(prompt) - 1
            k, v = reference.clean_kv(net, text, reference.clean_table(len(text), 0))
            torch.testing.assert_close(torch.stack(cache.k)[:, r, :, : len(text)], k, rtol=1e-10, atol=1e-10)
            torch.testing.assert_close(torch.stack(cache.v)[:, r, :, : len(text)], v, rtol=1e-10, atol=1e-10)


@pytest.mark.slow  # the session's trained model takes ~5-20 s to train once
def test_a_perfect_drafter_is_fully_accepted(trained):
    prompts = [[1, 2, 3], [5, 8, 11], [7, 8, 9, 10]]
    ar, _ = ARDecoder().generate(trained, prompts, 20)
    tokens, stats = DrafterSpeculativeDecoder(trained, k=3).generate(trained, prompts, 20)
    assert tokens == ar
    assert stats.acceptance_by_position == [1.0, 1.0, 1.0]
    assert stats.tpf >= 3.5 and stats.drafter_forwards_per_token <= 0.3
