import math

import pytest
import torch

from dlm.core.losses import AutoregressiveLoss, HybridLoss, MaskedDiffusionLoss

# vocab 3, L = 4, B = 2: blocks [0, 1] and [2, 3]; anchors 0 and 2; positions 1 and 3 corrupted.
CLEAN = torch.tensor([[0, 1, 2, 1]])
CORRUPTED = torch.tensor([[False, True, False, True]])
WEIGHTS = torch.tensor([[0.0, 2.0, 0.0, 4.0]])
ROWS = [[0.0, 1.0, -1.0], [2.0, 0.0, 0.5], [0.3, -0.2, 1.5], [1.0, 1.0, 0.0]]
LOGITS = torch.tensor([ROWS])


def ce(row: list[float], target: int) -> float:
    """-log softmax(row)[target], by hand."""
    return math.log(sum(math.exp(v) for v in row)) - row[target]


def test_masked_diffusion_with_shift_includes_the_next_anchor():
    loss = MaskedDiffusionLoss()(LOGITS, CLEAN, CORRUPTED, WEIGHTS, block_size=2, token_shift=True)
    # j=1 from logit 0 (w 2); j=2 = block 1's anchor from block 0's last logit (w 1); j=3 from logit 2 (w 4)
    expected = (2 * ce(ROWS[0], 1) + 1 * ce(ROWS[1], 2) + 4 * ce(ROWS[2], 1)) / 4
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_masked_diffusion_without_shift_predicts_the_position_itself():
    loss = MaskedDiffusionLoss()(LOGITS, CLEAN, CORRUPTED, WEIGHTS, block_size=2, token_shift=False)
    expected = (2 * ce(ROWS[1], 1) + 4 * ce(ROWS[3], 1)) / 4
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_masked_diffusion_switches():
    unweighted = MaskedDiffusionLoss(weighted=False)(LOGITS, CLEAN, CORRUPTED, WEIGHTS, 2, True)
    assert unweighted.item() == pytest.approx((ce(ROWS[0], 1) + ce(ROWS[1], 2) + ce(ROWS[2], 1)) / 4)
    no_cross = MaskedDiffusionLoss()(LOGITS, CLEAN, CORRUPTED, WEIGHTS, 2, True, cross_block=False)
    assert no_cross.item() == pytest.approx((2 * ce(ROWS[0], 1) + 4 * ce(ROWS[2], 1)) / 4)
    heavy = MaskedDiffusionLoss(cross_block_weight=3.0)(LOGITS, CLEAN, CORRUPTED, WEIGHTS, 2, True)
    assert heavy.item() == pytest.approx((2 * ce(ROWS[0], 1) + 3 * ce(ROWS[1], 2) + 4 * ce(ROWS[2], 1)) / 4)


def test_masked_diffusion_targets_and_gradient_reach_only_scored_logits():
    logits = LOGITS.clone().requires_grad_()
    MaskedDiffusionLoss()(logits, CLEAN, CORRUPTED, WEIGHTS, 2, True).backward()
    assert logits.grad[0, 3].abs().sum() == 0  # the last position has nothing after it
    assert (logits.grad[0, :3].abs().sum(-1) > 0).all()
    t = MaskedDiffusionLoss().targets(CORRUPTED, WEIGHTS, 2, True)
    assert t.positions.tolist() == [1, 2, 3] and t.logit_positions.tolist() == [0, 1, 2]
    assert t.cross_block.tolist() == [False, True, False]


def test_masked_diffusion_matches_a_slow_reference_on_random_inputs():
    torch.manual_seed(0)
    b, length, block, vocab = 3, 12, 4, 7
    logits = torch.randn(b, length, vocab)
    clean = torch.randint(0, vocab, (b, length))
    corrupted = torch.rand(b, length) < 0.5
    corrupted[:, ::block] = False
    weights = torch.rand(b, length) * corrupted
    total = 0.0
    for r in range(b):
        for j in range(1, length):
            if corrupted[r, j]:
                total += weights[r, j].item() * ce(logits[r, j - 1].tolist(), clean[r, j].item())
            elif j % block == 0:
                total += ce(logits[r, j - 1].tolist(), clean[r, j].item())
    loss = MaskedDiffusionLoss()(logits, clean, corrupted, weights, block, True)
    assert loss.item() == pytest.approx(total / (b * length), rel=1e-5)


def test_autoregressive_is_mean_next_token_ce():
    loss = AutoregressiveLoss()(LOGITS, CLEAN)
    expected = (ce(ROWS[0], 1) + ce(ROWS[1], 2) + ce(ROWS[2], 1)) / 3
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="do not match tokens"):
        AutoregressiveLoss()(LOGITS, CLEAN[:, :3])


def test_hybrid_weights_the_two_halves_of_one_forward():
    clean_rows = [[0.5, 0.0, 0.0], [0.0, 3.0, 1.0], [1.0, 0.0, 2.0], [0.0, 0.0, 0.0]]
    logits = torch.tensor([ROWS + clean_rows])
    loss = HybridLoss(diffusion_weight=0.5, ar_weight=2.0)(logits, CLEAN, CORRUPTED, WEIGHTS, 2, True)
    diffusion = (2 * ce(ROWS[0], 1) + ce(ROWS[1], 2) + 4 * ce(ROWS[2], 1)) / 4
    ar = (ce(clean_rows[0], 1) + ce(clean_rows[1], 2) + ce(clean_rows[2], 1)) / 3
    assert loss.item() == pytest.approx(0.5 * diffusion + 2.0 * ar, rel=1e-6)
    with pytest.raises(ValueError, match=r"\[x_t ; x_0\] of length 8"):
        HybridLoss()(LOGITS, CLEAN, CORRUPTED, WEIGHTS, 2, True)
