"""Answer-only training: a loss mask (batch, L) restricts the corruption, the masked-diffusion term
and the AR term to the marked tokens, each against a loop written from its definition."""

import pytest
import torch
import torch.nn.functional as F

from dlm.core.losses import AutoregressiveLoss, DraftBlockLoss, HybridLoss, MaskedDiffusionLoss, UniformCE
from dlm.core.masking import PositionDependent, Uniform, WholeBlocks

B, L, V, MASK = 4, 16, 13, 12


def data(seed=0, rows=3):
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, MASK, (rows, L), generator=g)
    logits = torch.randn(rows, 2 * L, V, generator=g, dtype=torch.float64)
    # prompts of different lengths, then answers, then padding on the last row
    loss_mask = torch.zeros(rows, L, dtype=torch.bool)
    for r, (start, end) in enumerate([(5, 16), (1, 12), (9, 14)][:rows]):
        loss_mask[r, start:end] = True
    return tokens, logits, loss_mask, torch.arange(rows) + 40


@pytest.mark.parametrize(
    "strategy", [Uniform(), PositionDependent(), WholeBlocks(0.5)], ids=["uniform", "pd", "whole"]
)
def test_only_marked_positions_are_corrupted_with_the_same_draws(strategy):
    tokens, _, loss_mask, index = data()
    free = strategy(tokens, index, 1, B, MASK, seed=2)
    kept = strategy(tokens, index, 1, B, MASK, seed=2, loss_mask=loss_mask)
    assert torch.equal(kept.mask, free.mask & loss_mask)
    assert torch.equal(kept.weights, free.weights * loss_mask)
    assert torch.equal(kept.tokens, tokens.masked_fill(kept.mask, MASK))


def test_the_ar_term_scores_the_marked_targets_only():
    tokens, logits, loss_mask, _ = data()
    clean = logits[:, L:]
    got = AutoregressiveLoss()(clean, tokens, loss_mask)
    ces = [
        F.cross_entropy(clean[r, i].float().unsqueeze(0), tokens[r, i + 1].unsqueeze(0))
        for r in range(3)
        for i in range(L - 1)
        if loss_mask[r, i + 1]
    ]
    torch.testing.assert_close(got, torch.stack(ces).mean())
    everything = torch.ones_like(loss_mask)
    torch.testing.assert_close(
        AutoregressiveLoss()(clean, tokens, everything), AutoregressiveLoss()(clean, tokens)
    )


@pytest.mark.parametrize("token_shift", [True, False])
def test_the_diffusion_term_scores_marked_targets_over_marked_tokens(token_shift):
    tokens, logits, loss_mask, index = data(seed=3)
    corrupted = Uniform()(tokens, index, 0, B, MASK, seed=1, loss_mask=loss_mask)
    noisy = logits[:, :L]
    got = MaskedDiffusionLoss()(
        noisy, tokens, corrupted.mask, corrupted.weights, B, token_shift, loss_mask=loss_mask
    )
    total = torch.zeros((), dtype=torch.float32)
    for r in range(3):
        for j in range(L):
            anchor = token_shift and j % B == 0 and j > 0
            if not loss_mask[r, j] or not (corrupted.mask[r, j] or anchor):
                continue
            if token_shift and j == 0:
                continue
            w = 1.0 if anchor and not corrupted.mask[r, j] else corrupted.weights[r, j]
            read = j - 1 if token_shift else j
            total += w * F.cross_entropy(noisy[r, read].float().unsqueeze(0), tokens[r, j].unsqueeze(0))
    torch.testing.assert_close(got, total / loss_mask.sum())


def test_hybrid_and_draft_block_losses_pass_the_mask_on():
    tokens, logits, loss_mask, index = data(seed=4)
    corrupted = WholeBlocks(0.7, Uniform())(tokens, index, 0, B, MASK, seed=3, loss_mask=loss_mask)
    args = (tokens, corrupted.mask, corrupted.weights, B, True)
    diffusion, ar = HybridLoss().terms(logits, *args, loss_mask=loss_mask)
    torch.testing.assert_close(diffusion, MaskedDiffusionLoss()(logits[:, :L], *args, loss_mask=loss_mask))
    torch.testing.assert_close(ar, AutoregressiveLoss()(logits[:, L:], tokens, loss_mask))
    blocks = HybridLoss(diffusion=DraftBlockLoss(UniformCE())).terms(logits, *args, loss_mask=loss_mask)[0]
    assert torch.isfinite(blocks)
