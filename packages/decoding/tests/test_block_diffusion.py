"""BlockDiffusionDecoder: the Fast-dLLM rule, the no-cache reference, exact block caches, batching."""

import pytest
import reference_decoding as reference
import torch

from dlm.decoding import ARDecoder, BlockDiffusionDecoder
from dlm.decoding.sampling import without_mask

SETTINGS = {
    "fold-causal": dict(clean="causal"),
    "fold-block": dict(clean="block"),
    "commit-causal": dict(clean="causal", fold=False),
    "commit-block": dict(clean="block", fold=False),
    "sub-blocks": dict(block_size=7, sub_block=2, threshold=0.5),
    "one-per-step": dict(threshold=1.0),
    "one-per-step-commit": dict(threshold=1.0, fold=False),
    "sampled": dict(temperature=1.0, top_k=8, seed=4),
}


def decoder_for(model, name: str) -> BlockDiffusionDecoder:
    settings = dict(block_size=5, threshold=0.3)
    settings.update(SETTINGS[name])
    if not model.config.token_shift and settings.get("fold") is None:
        settings["fold"] = False
    return BlockDiffusionDecoder(**settings)


@pytest.mark.parametrize("name", list(SETTINGS))
def test_matches_reference(model, prompts, name):
    decoder = decoder_for(model, name)
    for prompt in prompts:
        tokens, stats = decoder.generate(model, [prompt], 13)
        ref = reference.block_diffusion(decoder, model, prompt, 13)
        assert tokens == [ref.tokens]
        assert stats.forwards == ref.forwards


@pytest.mark.parametrize("name", ["fold-causal", "commit-block", "sub-blocks"])
def test_batch_equals_rows_one_by_one(model, prompts, name):
    decoder = decoder_for(model, name)
    batched, stats = decoder.generate(model, prompts, 17)
    single = [decoder.generate(model, [p], 17) for p in prompts]
    assert batched == [s[0][0] for s in single]
    assert stats.forwards == {"target": sum(s[1].forwards["target"] for s in single)}


@pytest.mark.parametrize("name", ["fold-causal", "fold-block", "commit-causal", "commit-block"])
def test_cache_holds_the_committed_blocks_exactly(model, prompts, name):
    """K/V of committed blocks equal a fresh forward over the committed text in the clean stream's
    attention: causal, or block-causal over the decoded blocks."""
    decoder = decoder_for(model, name)
    result = decoder.decode(model, prompts, 16)
    cache = result.caches["target"]
    structure = decoder.block_size if decoder.clean == "block" else None
    for r, (prompt, out) in enumerate(zip(prompts, result.tokens, strict=True)):
        n = cache.lengths[r]
        assert (n - len(prompt) + 1) % decoder.block_size == 0 and n > len(prompt)
        text = (prompt + out)[:n]
        k, v = reference.clean_kv(model, text, reference.clean_table(n, len(prompt) - 1, structure))
        torch.testing.assert_close(torch.stack(cache.k)[:, r, :, :n], k, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(torch.stack(cache.v)[:, r, :, :n], v, rtol=1e-10, atol=1e-10)


def test_fold_saves_the_commit_forwards(shifted, prompts):
    folded = BlockDiffusionDecoder(block_size=5, threshold=0.3)
    separate = BlockDiffusionDecoder(block_size=5, threshold=0.3, fold=False)
    _, f = folded.generate(shifted, prompts, 20)
    _, s = separate.generate(shifted, prompts, 20)
    assert f.forwards["target"] < s.forwards["target"]


def test_eos_stops_a_row_where_the_free_run_has_it(model, prompts):
    decoder = decoder_for(model, "fold-causal")
    free, _ = decoder.generate(model, prompts, 16)
    eos = free[1][4]
    decoder.eos_id = eos
    tokens, _ = decoder.generate(model, prompts, 16)
    for row, out in zip(free, tokens, strict=True):
        assert out == (row[: row.index(eos) + 1] if eos in row else row)


def test_fast_dllm_rule():
    """Commit every masked position over the threshold, the most confident one if none is, and
    with sub-blocks only inside the first sub-block that still has masks."""
    M = 9
    decoder = BlockDiffusionDecoder(block_size=5, threshold=0.6)
    logits = torch.zeros(5, 10)
    for position, (token, logit) in enumerate([(1, 5.0), (2, 0.5), (3, 3.0), (4, 0.1), (5, 0.0)]):
        logits[position, token] = logit  # prediction for block position `position + 1`
    block = [0, M, M, M, M]
    decoder.fill(block, logits, 4, M, None)
    assert block == [0, 1, M, 3, M]  # confidences .95, .17, .72, .12 (9 tokens: [MASK] excluded)
    strict = BlockDiffusionDecoder(block_size=5, threshold=1.0)
    block = [0, M, M, M, M]
    strict.fill(block, logits, 4, M, None)
    assert block == [0, 1, M, M, M]
    subs = BlockDiffusionDecoder(block_size=5, threshold=0.6, sub_block=2)
    block = [0, M, M, M, M]
    subs.fill(block, logits, 4, M, None)
    assert block == [0, 1, M, M, M]
    subs.fill(block, logits, 4, M, None)
    assert block == [0, 1, 2, M, M]  # the first sub-block is finished before the second starts
    assert subs.ready([0, 1, 2, M, M], 2, M) and not subs.ready([0, 1, 2, M, M], 3, M)


@pytest.mark.slow  # the session's trained model takes ~5-20 s to train once
def test_trained_model_fills_whole_blocks_and_matches_ar(trained):
    prompts = [[1, 2, 3, 4, 5], [5, 8, 11, 14, 1], [7, 8, 9, 10]]
    ar, _ = ARDecoder().generate(trained, prompts, 20)
    for fold in (True, False):
        tokens, stats = BlockDiffusionDecoder(block_size=4, threshold=0.9, fold=fold).generate(
            trained, prompts, 20
        )
        assert tokens == ar
        assert stats.tpf >= (3.3 if fold else 1.8)  # 4 tokens per draft forward (+ a commit forward)


@pytest.mark.parametrize("sampled", [False, True], ids=["greedy", "sampled"])
@pytest.mark.parametrize("fold", [None, False], ids=["fold", "commit"])
def test_threshold_one_commits_one_token_per_forward(model, prompts, fold, sampled):
    """Every forward, the fold's next anchor included, commits exactly one emitted token: TPF 1.0,
    also when the budget ends inside a block (13 = 2 x 5 + 3)."""
    settings = dict(temperature=1.0, seed=2) if sampled else {}
    fold = fold if model.config.token_shift else False
    decoder = BlockDiffusionDecoder(block_size=5, threshold=1.0, fold=fold, **settings)
    tokens, stats = decoder.generate(model, prompts, 13)
    assert all(len(row) == 13 for row in tokens)
    assert stats.tokens == stats.forwards["target"] == 13 * len(prompts)


def test_threshold_one_when_softmax_rounds_to_one():
    """A logit gap of 50 makes float64 softmax exactly 1.0 at every position; threshold 1.0 still
    fills one of them."""
    M = 9
    logits = torch.zeros(4, 10)
    logits[:, 2] = 50.0
    assert bool((without_mask(logits, M).softmax(-1).max(-1).values == 1.0).all())
    block = [0, M, M, M, M]
    BlockDiffusionDecoder(block_size=5, threshold=1.0).fill(block, logits, 4, M, None)
    assert block.count(M) == 3


def test_fold_anchor_is_a_masked_position():
    """With fold the block has B masked positions, the next anchor last (predicted by the block's
    last logit); it waits like any other when it is not confident, and positions past the budget
    are never filled."""
    M = 9
    decoder = BlockDiffusionDecoder(block_size=3, threshold=0.6)
    logits = torch.zeros(3, 10)
    logits[0, 1], logits[1, 2], logits[2, 3] = 5.0, 5.0, 0.5  # the anchor's confidence is .18
    block = [0, M, M, M]
    decoder.fill(block, logits, 3, M, None)
    assert block == [0, 1, 2, M] and not decoder.ready(block, 3, M) and decoder.ready(block, 2, M)
    decoder.fill(block, logits, 3, M, None)
    assert block == [0, 1, 2, 3]
    block = [0, M, M, M]
    logits[2, 3] = 50.0  # the most confident, but past a room of one
    BlockDiffusionDecoder(block_size=3, threshold=1.0).fill(block, logits, 1, M, None)
    assert block == [0, 1, M, M]
