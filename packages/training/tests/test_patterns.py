"""The [x_t ; x_0] pattern objects against the forward built by hand (the mask ANDed with the
same-document mask, both halves at positions 0..L-1)."""

import pytest
import torch

from dlm.attention import BlockDiffusion, Causal, TriMode
from dlm.attention.masks import SameDocument
from dlm.core import ModelConfig, Transformer
from dlm.core.checkpoint import training_of
from dlm.training import (
    Architecture,
    ARLanguageModel,
    BidirectionalPattern,
    BlockCleanPattern,
    ConversionModule,
    TriModeModule,
)
from dlm.training.callbacks import training_record
from dlm.training.patterns import CausalCleanPattern


def hand_built(model, noisy, clean, mask, doc_ids):
    if doc_ids is not None:
        mask = mask & SameDocument.for_noisy_clean(doc_ids)
    batch, length = noisy.shape
    pos = torch.arange(length).expand(batch, -1).repeat(1, 2)
    return model.hidden(torch.cat([noisy, clean], 1), pos, mask)


@pytest.mark.parametrize("with_docs", [False, True])
@pytest.mark.parametrize(
    ("pattern", "mask"), [(CausalCleanPattern(), TriMode), (BlockCleanPattern(), BlockDiffusion)]
)
def test_a_noisy_clean_pattern_is_the_hand_built_forward(pattern, mask, with_docs):
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=64, dim=32, n_layers=2, n_heads=2, n_kv_heads=2, max_seq_len=64)
    model = Transformer(config).eval()
    clean = torch.randint(0, 63, (3, 32))
    noisy = torch.where(torch.rand(3, 32) < 0.5, torch.full_like(clean, 63), clean)
    doc_ids = torch.randint(0, 3, (3, 32)).sort(-1).values if with_docs else None
    expected = hand_built(model, noisy, clean, mask(8, 32), doc_ids)
    hidden = pattern.hidden(model, noisy, clean, 8, doc_ids)
    assert hidden.shape == (3, 64, 32)
    torch.testing.assert_close(hidden, expected)
    torch.testing.assert_close(pattern.noisy_hidden(model, noisy, clean, 8, doc_ids), expected[:, :32])


def test_the_clean_half_of_the_tri_mode_pattern_is_the_ar_forward():
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=64, dim=32, n_layers=2, n_heads=2, n_kv_heads=2, max_seq_len=64)
    model = Transformer(config).eval()
    clean = torch.randint(0, 63, (2, 16))
    noisy = torch.full_like(clean, 63)
    ar = model.hidden(clean, torch.arange(16).expand(2, -1), Causal())
    torch.testing.assert_close(CausalCleanPattern().hidden(model, noisy, clean, 4)[:, 16:], ar)
    assert (CausalCleanPattern.clean, BlockCleanPattern.clean) == ("causal", "block")


def test_every_module_records_how_its_clean_stream_attends_on_its_model():
    """Decoders with block_size / k / clean unset read them from the model's TrainingRecord."""
    tiny = Architecture(dim=32, n_layers=1, n_heads=2, max_seq_len=64)
    for module, clean in (
        (ARLanguageModel(architecture=tiny), None),
        (ConversionModule(architecture=tiny, block_size=8), "block"),
        (ConversionModule(architecture=tiny, block_size=8, pattern=BidirectionalPattern()), None),
        (TriModeModule(architecture=tiny, block_size=4), "causal"),
    ):
        record = training_of(module.model)
        assert record == training_record(module)
        assert (record.module, record.block_size, record.clean) == (
            type(module).__name__,
            module.block_size,
            clean,
        )
