"""The Decoder protocol: unset sizes come from the training record and decode exactly as the same
values given explicitly; check() refuses and warns before any forward; only drafter speculation
takes a drafter."""

import copy
import dataclasses
import warnings

import pytest

from dlm.core.checkpoint import TrainingRecord, set_training
from dlm.core.protocols import Decoder, LayoutMismatch, LayoutWarning
from dlm.decoding import (
    ARDecoder,
    BlockDiffusionDecoder,
    DrafterSpeculativeDecoder,
    FusedSelfSpeculativeDecoder,
    SelfSpeculativeDecoder,
)

TRIMODE = TrainingRecord("TriModeModule", block_size=4, token_shift=True, clean="causal")
CONVERSION = TrainingRecord("ConversionModule", block_size=4, token_shift=True, clean="block")
DRAFTER = TrainingRecord("DrafterModule", block_size=8, k=4, token_shift=True, clean="causal")


def trained(model, record):
    """A copy of `model` carrying `record` (the session's models are shared by other tests)."""
    model = copy.deepcopy(model)
    set_training(model, record)
    return model


def outcome(decoder, model, prompts):
    """Tokens and every stat but the wall time."""
    result = decoder.decode(model, prompts, 13)
    return result.tokens, dataclasses.replace(result.stats, seconds=0.0, forward_seconds={})


def no_forward(model):
    """`model` whose forwards fail: a check that ran one would raise this instead."""

    def refuse(*args, **kwargs):
        raise AssertionError("check() ran a forward")

    model.forward = model.hidden = refuse
    return model


@pytest.mark.parametrize(
    ("unset", "explicit"),
    [
        (SelfSpeculativeDecoder(), SelfSpeculativeDecoder(k=3)),
        (SelfSpeculativeDecoder(cross_block=True), SelfSpeculativeDecoder(k=3, cross_block=True)),
        (FusedSelfSpeculativeDecoder(), FusedSelfSpeculativeDecoder(k=3)),
        (FusedSelfSpeculativeDecoder(quadratic=True), FusedSelfSpeculativeDecoder(k=3, quadratic=True)),
        (BlockDiffusionDecoder(threshold=0.3), BlockDiffusionDecoder(4, 0.3, clean="causal")),
    ],
    ids=["self-spec", "cross-block", "fused", "quadratic", "block"],
)
def test_unset_sizes_decode_as_the_records_values(shifted, prompts, unset, explicit):
    model = trained(shifted, TRIMODE)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the record's own values are never warned about
        assert outcome(unset, model, prompts) == outcome(explicit, model, prompts)
    assert getattr(unset, "k", None) is None and getattr(unset, "block_size", None) is None


def test_a_block_causal_record_commits_blocks_block_causally(shifted, prompts):
    model = trained(shifted, CONVERSION)
    explicit = BlockDiffusionDecoder(4, 0.3, clean="block")
    assert outcome(BlockDiffusionDecoder(threshold=0.3), model, prompts) == outcome(explicit, model, prompts)
    causal = BlockDiffusionDecoder(4, 0.3, clean="causal")
    assert outcome(BlockDiffusionDecoder(threshold=0.3), model, prompts) != outcome(causal, model, prompts)


def test_drafter_speculation_takes_k_from_the_drafter(shifted, make_model, prompts):
    target = make_model(seed=7, n_layers=1)
    record = dataclasses.replace(DRAFTER, k=7)
    drafter = trained(shifted, record)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        unset = outcome(DrafterSpeculativeDecoder(drafter), target, prompts)
    assert unset == outcome(DrafterSpeculativeDecoder(drafter, k=7), target, prompts)
    set_training(drafter, TRIMODE)  # no k recorded: block_size - 1
    assert outcome(DrafterSpeculativeDecoder(drafter), target, prompts) == outcome(
        DrafterSpeculativeDecoder(drafter, k=3), target, prompts
    )


def test_one_decoder_serves_models_with_different_records(shifted, prompts):
    decoder = SelfSpeculativeDecoder()
    four, six = trained(shifted, TRIMODE), trained(shifted, dataclasses.replace(TRIMODE, block_size=6))
    assert outcome(decoder, four, prompts) == outcome(SelfSpeculativeDecoder(k=3), four, prompts)
    assert outcome(decoder, six, prompts) == outcome(SelfSpeculativeDecoder(k=5), six, prompts)
    assert decoder.k is None


@pytest.mark.parametrize(
    ("decoder", "option"),
    [
        (SelfSpeculativeDecoder(), "k"),
        (FusedSelfSpeculativeDecoder(), "k"),
        (BlockDiffusionDecoder(), "block_size"),
    ],
    ids=["self-spec", "fused", "block"],
)
def test_an_unset_size_needs_a_record(shifted, decoder, option):
    who = type(decoder).__name__
    with pytest.raises(
        ValueError,
        match=rf"^{who}: {option} is not set and the model carries no training record \(dlm.json "
        rf"'training'\) to take it from; pass {option}=$",
    ):
        decoder.generate(shifted, [[1, 2]], 4)
    with pytest.raises(ValueError, match=r"training record \(ARLanguageModel\) holds no block_size"):
        decoder.check(trained(shifted, TrainingRecord("ARLanguageModel")))


def test_an_unset_k_needs_the_drafters_record(shifted, make_model):
    with pytest.raises(
        ValueError, match=r"^DrafterSpeculativeDecoder: k is not set and the drafter carries no"
    ):
        DrafterSpeculativeDecoder(shifted).check(make_model(seed=7))


@pytest.mark.parametrize(
    ("decoder", "drafts"),
    [
        (SelfSpeculativeDecoder(k=2), 2),
        (FusedSelfSpeculativeDecoder(k=5), 5),
        (BlockDiffusionDecoder(block_size=6), 5),
    ],
    ids=["self-spec", "fused", "block"],
)
def test_an_explicit_block_unlike_training_is_warned_about(shifted, decoder, drafts):
    model = no_forward(trained(shifted, TRIMODE))
    with pytest.warns(LayoutWarning) as caught:
        decoder.check(model)
    assert [str(w.message) for w in caught] == [
        f"drafts {drafts} masks per block but training blocks hold block_size - 1 = 3"
    ]


def test_drafter_layout_mismatches_are_refused(shifted, make_model):
    target, drafter = no_forward(make_model(seed=7)), no_forward(trained(shifted, DRAFTER))
    with pytest.raises(LayoutMismatch) as err:
        DrafterSpeculativeDecoder(drafter, k=8).check(target)
    assert err.value.predicate == (
        "drafts k=8 tokens, more than the drafter's block size 8 holds after the anchor (7)"
    )
    assert str(err.value) == f"DrafterSpeculativeDecoder {err.value.predicate}"
    with pytest.raises(LayoutMismatch) as err:
        DrafterSpeculativeDecoder(drafter, k=4, cross_block=True).check(target)
    assert err.value.predicate == (
        "sets cross_block=True, but DrafterModule never trains the drafter's logit after its draft "
        "block; use cross_block=False"
    )


def test_drafter_blocks_unlike_training_are_warned_about(shifted, make_model):
    target, drafter = no_forward(make_model(seed=7)), no_forward(trained(shifted, DRAFTER))
    with pytest.warns(LayoutWarning) as caught:
        DrafterSpeculativeDecoder(drafter, k=5).check(target)
    assert [str(w.message) for w in caught] == [
        "drafts [t, MASK x 5] but training shows the drafter [anchor, MASK x 7] blocks (block_size 8); "
        "the loss scores only the first 4 drafts"
    ]
    set_training(drafter, TRIMODE)
    with pytest.warns(LayoutWarning) as caught:
        DrafterSpeculativeDecoder(drafter, k=2, cross_block=True).check(target)
    assert [str(w.message) for w in caught] == [
        "drafts [t, MASK x 2] but training shows the drafter [anchor, MASK x 3] blocks (block_size 4)"
    ]


@pytest.mark.parametrize(
    "decoder",
    [
        SelfSpeculativeDecoder(k=3),
        FusedSelfSpeculativeDecoder(k=3),
        BlockDiffusionDecoder(block_size=4),
    ],
    ids=type,
)
def test_check_refuses_a_model_without_a_mask_token_before_any_forward(make_model, decoder):
    with pytest.raises(ValueError, match="needs a model with a mask token"):
        decoder.check(no_forward(make_model(mask_token_id=None)))
    decoder.check(no_forward(make_model()))


def test_only_drafter_speculation_takes_a_drafter(shifted):
    for decoder in (
        ARDecoder(),
        BlockDiffusionDecoder(),
        SelfSpeculativeDecoder(),
        FusedSelfSpeculativeDecoder(),
    ):
        assert isinstance(decoder, Decoder) and not decoder.needs_drafter
        name = type(decoder).__name__
        with pytest.raises(ValueError, match=f"^{name} drafts with its model; it takes no drafter$"):
            decoder.bind_drafter(shifted)
    speculative = DrafterSpeculativeDecoder()
    assert isinstance(speculative, Decoder) and speculative.needs_drafter
    speculative.bind_drafter(shifted)
    assert speculative.drafter is shifted
