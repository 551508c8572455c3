"""Tri-mode's left-to-right losses: WholeBlocks corruption and DraftBlockLoss, each against a slow
reference written with loops."""

import pytest
import torch

from dlm.core.losses import (
    ChainLoss,
    DraftBlockLoss,
    DrafterLossMix,
    ForwardKL,
    MaskedDiffusionLoss,
    PositionalCE,
    UniformCE,
)
from dlm.core.masking import FixedRatio, PositionDependent, Uniform, WholeBlocks

B, L, V, MASK = 4, 16, 11, 10


def batch(seed=0, rows=3):
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, V - 1, (rows, L), generator=g)
    logits = torch.randn(rows, L, V, generator=g, dtype=torch.float64, requires_grad=True)
    return tokens, logits, torch.arange(rows) + 100


@pytest.mark.parametrize("token_shift", [True, False])
def test_on_whole_blocks_uniform_ce_is_masked_diffusion_times_b_over_b_minus_1(token_shift):
    tokens, logits, index = batch()
    corrupted = FixedRatio(1.0)(tokens, index, 0, B, MASK, seed=0)
    args = (logits, tokens, corrupted.mask, corrupted.weights, B, token_shift)
    diffusion = MaskedDiffusionLoss(weighted=False, cross_block_weight=0.0)(*args)
    blocks = DraftBlockLoss(UniformCE(), weighted=False, cross_block_weight=0.0)(*args)
    torch.testing.assert_close(blocks, diffusion * B / (B - 1), check_dtype=False)  # MD's CE is float32


def reference(logits, tokens, mask, weights, block_loss, weight, token_shift):
    """Loops: split blocks into whole and partly masked ones, score each part on its own."""
    rest = mask.clone()
    block_logits, block_targets = [], []
    for r in range(tokens.shape[0]):
        for b in range(L // B):
            if bool(mask[r, b * B + 1 : (b + 1) * B].all()):
                rest[r, b * B : (b + 1) * B] = False
                reads = [j - 1 if token_shift else j for j in range(b * B + 1, (b + 1) * B)]
                block_logits.append(logits[r, reads])
                block_targets.append(tokens[r, b * B + 1 : (b + 1) * B])
    diffusion = MaskedDiffusionLoss()(logits, tokens, rest, weights, B, token_shift)
    if not block_logits:
        return diffusion
    return diffusion + weight * block_loss(torch.stack(block_logits), torch.stack(block_targets))


@pytest.mark.parametrize("token_shift", [True, False])
@pytest.mark.parametrize("fraction", [0.0, 0.4, 1.0])
def test_the_mixed_loss_matches_the_loop_reference(token_shift, fraction):
    tokens, logits, index = batch(seed=1, rows=4)
    corrupted = WholeBlocks(fraction, Uniform())(tokens, index, 3, B, MASK, seed=7)
    mix = DrafterLossMix([UniformCE(), PositionalCE(gamma=1.5), ChainLoss()], [1.0, 0.5, 0.2])
    loss = DraftBlockLoss(mix, weight=0.7)
    got = loss(logits, tokens, corrupted.mask, corrupted.weights, B, token_shift)
    want = reference(logits, tokens, corrupted.mask, corrupted.weights, mix, 0.7, token_shift)
    torch.testing.assert_close(got, want, check_dtype=False)
    got.backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()


def test_whole_blocks_mixes_per_block_and_stays_a_function_of_the_sample():
    tokens = torch.zeros(6, 64, dtype=torch.long)
    index = torch.arange(6)
    none = WholeBlocks(0.0, PositionDependent())(tokens, index, 2, 8, MASK, seed=5)
    # fraction 0 draws the base's masks after one extra draw per block, so compare statistics and
    # the weights' meaning rather than exact masks; fraction 1 masks every non-anchor position
    assert none.mask[:, ::8].sum() == 0
    every = WholeBlocks(1.0)(tokens, index, 2, 8, MASK, seed=5)
    anchors = torch.zeros(6, 64, dtype=torch.bool)
    anchors[:, ::8] = True
    assert torch.equal(every.mask, ~anchors)
    assert torch.equal(every.weights, (~anchors).float())
    half = WholeBlocks(0.5, Uniform())(tokens, index, 2, 8, MASK, seed=5)
    whole = half.mask.view(6, 8, 8)[:, :, 1:].all(-1)
    assert 0 < whole.sum() < whole.numel()
    # a whole block keeps its weights for the masked-diffusion estimate: 1 where WholeBlocks chose
    # it, the base's where the base masked it whole by chance
    assert (half.weights.view(6, 8, 8)[whole][:, 1:] >= 1).all()
    alone = WholeBlocks(0.5, Uniform())(tokens[2:3], index[2:3], 2, 8, MASK, seed=5)
    assert torch.equal(alone.mask, half.mask[2:3]) and torch.equal(alone.weights, half.weights[2:3])


def test_bad_settings_are_one_line():
    with pytest.raises(ValueError, match=r"^fraction must lie in \[0, 1\], got 1.5$"):
        WholeBlocks(1.5)
    with pytest.raises(ValueError, match=r"^block_loss ForwardKL needs a target's logits"):
        DraftBlockLoss(ForwardKL())
    with pytest.raises(ValueError, match=r"^weight must be a non-negative number, got -1$"):
        DraftBlockLoss(UniformCE(), weight=-1)
    with pytest.raises(ValueError, match=r"^block_loss must be a DrafterLoss or DrafterLossMix, got 'ce'$"):
        DraftBlockLoss("ce")
