"""Bad input gets a one-line ValueError naming the value and what was expected."""

import copy

import pytest

from dlm.decoding import (
    ARDecoder,
    BlockDiffusionDecoder,
    DrafterSpeculativeDecoder,
    FusedSelfSpeculativeDecoder,
    SelfSpeculativeDecoder,
)


def test_prompt_longer_than_the_cache(shifted):
    with pytest.raises(ValueError, match=r"a prompt of 9 tokens is longer than the cache \(max_len=8\)"):
        ARDecoder(max_len=8).generate(shifted, [[1] * 9], 1)
    with pytest.raises(
        ValueError, match=r"max_new_tokens=20 \+ 1 scratch slots exceed the cache \(max_len=16\)"
    ):
        ARDecoder(max_len=16).generate(shifted, [[1] * 9], 20)
    with pytest.raises(ValueError, match="longer than the cache"):
        SelfSpeculativeDecoder(k=4).generate(shifted, [[1] * 300], 1)  # model.config.max_seq_len = 256


@pytest.mark.parametrize(
    "decoder", [ARDecoder(), SelfSpeculativeDecoder(k=4), BlockDiffusionDecoder(block_size=8)]
)
def test_empty_prompts(shifted, decoder):
    with pytest.raises(ValueError, match="prompt 1 is empty; every prompt needs at least one token"):
        decoder.generate(shifted, [[1, 2], []], 4)
    with pytest.raises(ValueError, match="prompts must be a non-empty batch of token lists"):
        decoder.generate(shifted, [], 4)


def test_bad_tokens_and_budgets(shifted):
    with pytest.raises(
        ValueError, match=r"prompt 0 holds token id 99 outside the model's vocabulary \[0, 24\)"
    ):
        ARDecoder().generate(shifted, [[1, 99]], 4)
    with pytest.raises(ValueError, match="max_new_tokens must be a non-negative integer, got -1"):
        ARDecoder().generate(shifted, [[1]], -1)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: BlockDiffusionDecoder(block_size=0), "block_size must be a positive integer, got 0"),
        (lambda: BlockDiffusionDecoder(block_size=1), "block_size must be at least 2"),
        (lambda: BlockDiffusionDecoder(sub_block=-2), "sub_block must be a positive integer, got -2"),
        (lambda: BlockDiffusionDecoder(threshold=0), r"threshold must be in \(0, 1\], got 0"),
        (
            lambda: BlockDiffusionDecoder(clean="nonsense"),
            "clean must be .causal., .block. or None, got .nonsense.",
        ),
        (lambda: SelfSpeculativeDecoder(k=0), "k must be a positive integer, got 0"),
        (lambda: FusedSelfSpeculativeDecoder(k=-1), "k must be a positive integer, got -1"),
        (lambda: DrafterSpeculativeDecoder(None, k=0), "k must be a positive integer, got 0"),
        (lambda: ARDecoder(temperature=-0.5), r"temperature must be >= 0 \(0 is greedy\), got -0.5"),
        (lambda: SelfSpeculativeDecoder(temperature=-1), "temperature must be >= 0"),
        (lambda: ARDecoder(top_k=0), "top_k must be a positive integer or None, got 0"),
        (lambda: ARDecoder(top_p=1.5), r"top_p must be in \(0, 1\] or None, got 1.5"),
    ],
)
def test_bad_settings(make, message):
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize(
    "decoder", [BlockDiffusionDecoder(), SelfSpeculativeDecoder(), FusedSelfSpeculativeDecoder()], ids=type
)
def test_diffusion_decoders_need_a_mask_token(make_model, decoder):
    ar_model = make_model(mask_token_id=None)
    with pytest.raises(
        ValueError, match=r"needs a model with a mask token, but model.config.mask_token_id is None"
    ):
        decoder.generate(ar_model, [[1, 2]], 4)


def test_drafter_must_share_the_vocabulary_and_have_a_mask(make_model, shifted):
    small = make_model(vocab_size=20, mask_token_id=19)
    with pytest.raises(
        ValueError, match=r"the drafter's vocabulary \(20 tokens\) differs from the target's \(24 tokens\)"
    ):
        DrafterSpeculativeDecoder(small).generate(shifted, [[1, 2]], 4)
    with pytest.raises(ValueError, match="drafter needs a model with a mask token"):
        DrafterSpeculativeDecoder(make_model(mask_token_id=None)).generate(shifted, [[1, 2]], 4)


def test_fold_needs_token_shift(unshifted):
    with pytest.raises(ValueError, match="fold=True .* needs a token-shift model"):
        BlockDiffusionDecoder(fold=True).generate(unshifted, [[1, 2]], 4)


def test_drafter_may_come_later_but_must_come(shifted):
    decoder = DrafterSpeculativeDecoder(k=2)
    with pytest.raises(
        ValueError, match="DrafterSpeculativeDecoder has no drafter: pass drafter= or set decoder.drafter"
    ):
        decoder.generate(shifted, [[1, 2]], 4)
    decoder.drafter = shifted
    assert len(decoder.generate(shifted, [[1, 2]], 4)[0][0]) == 4


def test_cross_block_is_refused_for_a_drafter_module_drafter(shifted):
    from dlm.core.checkpoint import TrainingRecord, set_training

    drafter = copy.deepcopy(shifted)
    set_training(drafter, TrainingRecord("DrafterModule", block_size=8, k=7, token_shift=True))
    with pytest.raises(
        ValueError, match=r"sets cross_block=True, but DrafterModule never trains the drafter's logit"
    ):
        DrafterSpeculativeDecoder(drafter, k=2, cross_block=True).generate(shifted, [[1, 2]], 4)
    assert len(DrafterSpeculativeDecoder(drafter, k=2).generate(shifted, [[1, 2]], 4)[0][0]) == 4
    set_training(drafter, TrainingRecord("TriModeModule", block_size=8, token_shift=True))
    assert (
        len(DrafterSpeculativeDecoder(drafter, k=2, cross_block=True).generate(shifted, [[1, 2]], 4)[0][0])
        == 4
    )
