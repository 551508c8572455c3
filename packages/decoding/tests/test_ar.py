"""ARDecoder against the no-cache reference, batched vs one by one, EOS and budget."""

import pytest
import reference_decoding as reference
import torch
from reference_decoding import causal_logits

from dlm.decoding import ARDecoder


@pytest.mark.parametrize(
    "decoder", [ARDecoder(), ARDecoder(temperature=0.8, top_k=5, seed=3)], ids=["greedy", "sampled"]
)
def test_matches_reference_one_prompt_at_a_time(model, prompts, decoder):
    for prompt in prompts:
        tokens, stats = decoder.generate(model, [prompt], 12)
        ref = reference.ar(decoder, model, prompt, 12)
        assert tokens == [ref.tokens]
        assert stats.forwards == ref.forwards
        assert stats.tpf == 1.0


def test_batch_equals_rows_one_by_one(model, prompts):
    decoder = ARDecoder()
    batched, stats = decoder.generate(model, prompts, 10)
    assert batched == [decoder.generate(model, [p], 10)[0][0] for p in prompts]
    assert stats.tokens == 40 and stats.forwards == {"target": 40} and stats.rows == 4


def test_greedy_is_the_argmax_of_a_full_forward(shifted):
    prompt = [1, 2, 3]
    tokens, _ = ARDecoder().generate(shifted, [prompt], 5)
    for i, token in enumerate(tokens[0]):
        logits = causal_logits(shifted, prompt + tokens[0][:i])[-1]
        logits[shifted.config.mask_token_id] = float("-inf")
        assert token == int(logits.argmax())


def test_eos_stops_a_row_and_is_kept(model, prompts):
    free, _ = ARDecoder().generate(model, prompts, 12)
    eos = free[0][3]
    tokens, stats = ARDecoder(eos_id=eos).generate(model, prompts, 12)
    for row, out in zip(free, tokens, strict=True):
        cut = row.index(eos) + 1 if eos in row else len(row)
        assert out == row[:cut]
    assert stats.tokens == sum(len(t) for t in tokens)
    assert stats.forwards["target"] == stats.tokens


def test_zero_budget_and_one_token_prompts(model):
    tokens, stats = ARDecoder().generate(model, [[1], [2, 3]], 0)
    assert tokens == [[], []] and stats.forwards == {} and stats.tokens == 0
    tokens, _ = ARDecoder().generate(model, [[1], [1]], 4)
    assert tokens[0] == tokens[1] and len(tokens[0]) == 4


def test_never_emits_the_mask_token(make_model):
    model = make_model()
    with torch.no_grad():
        model.lm_head.weight[model.config.mask_token_id] *= 100  # [MASK] would win every argmax
    tokens, _ = ARDecoder().generate(model, [[1, 2]], 8)
    sampled, _ = ARDecoder(temperature=1.0).generate(model, [[1, 2]], 8)
    assert model.config.mask_token_id not in tokens[0] + sampled[0]


def test_cache_holds_the_committed_text_exactly(model, prompts):
    result = ARDecoder().decode(model, prompts, 9)
    cache = result.caches["target"]
    for r, (prompt, out) in enumerate(zip(prompts, result.tokens, strict=True)):
        text = (prompt + out)[: cache.lengths[r]]
        assert cache.lengths[r] == len(prompt) + len(out) - 1
        k, v = reference.clean_kv(model, text, reference.clean_table(len(text), 0))
        torch.testing.assert_close(torch.stack(cache.k)[:, r, :, : len(text)], k, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(torch.stack(cache.v)[:, r, :, : len(text)], v, rtol=1e-10, atol=1e-10)
