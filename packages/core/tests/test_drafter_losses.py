"""Drafter losses against hand-computed values; the chain loss's gradient against finite differences."""

import math

import pytest
import torch

from dlm.core.losses import (
    ChainLoss,
    DPaceCE,
    DrafterLossMix,
    FirstErrorFocal,
    ForwardKL,
    NegLogAcceptance,
    PositionalCE,
    TotalVariation,
    UniformCE,
)
from dlm.core.losses.drafter.base import token_ce

# Two draft blocks of K = 3 positions over a vocabulary of 3.
ROWS = [
    [[2.0, 0.0, -1.0], [0.5, 1.5, 0.0], [0.0, 0.0, 3.0]],  # argmax 0, 1, 2
    [[0.0, 1.0, 0.0], [1.0, 0.2, 0.3], [-1.0, 2.0, 0.5]],  # argmax 1, 0, 1
]
TARGETS = [[0, 0, 2], [1, 0, 2]]  # block 0: position 2 wrong; block 1: position 3 wrong
TARGET_ROWS = [
    [[1.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 1.0, 2.0]],
    [[0.0, 2.0, 1.0], [2.0, 0.0, 0.0], [0.5, 0.5, 0.5]],
]
LOGITS, Y, TARGET_LOGITS = torch.tensor(ROWS), torch.tensor(TARGETS), torch.tensor(TARGET_ROWS)


def softmax(row):
    z = sum(math.exp(v) for v in row)
    return [math.exp(v) / z for v in row]


def prob(n, k):
    return softmax(ROWS[n][k])[TARGETS[n][k]]


def ce(n, k):
    return -math.log(prob(n, k))


def alpha(n, k):
    return sum(min(a, b) for a, b in zip(softmax(ROWS[n][k]), softmax(TARGET_ROWS[n][k])))


def test_uniform_ce_is_the_mean_over_blocks_and_positions():
    expected = sum(ce(n, k) for n in range(2) for k in range(3)) / 6
    assert UniformCE()(LOGITS, Y).item() == pytest.approx(expected, rel=1e-6)


def test_positional_weights_decay_exponentially_with_gamma():
    gamma = 1.5
    w = [1.0, math.exp(-1 / gamma), math.exp(-2 / gamma)]
    per_block = [sum(w[k] * ce(n, k) for k in range(3)) / sum(w) for n in range(2)]
    assert PositionalCE(gamma)(LOGITS, Y).item() == pytest.approx(sum(per_block) / 2, rel=1e-6)
    # gamma -> infinity is the uniform baseline
    assert PositionalCE(1e9)(LOGITS, Y).item() == pytest.approx(UniformCE()(LOGITS, Y).item(), rel=1e-6)


def test_dpace_weights_by_hand():
    # p = (0.8, 0.6, 0.4), alpha = 0.5: s = (0.9, 0.8, 0.7), P = (0.9, 0.72, 0.504)
    p = torch.tensor([[0.8, 0.6, 0.4]], dtype=torch.float64)
    expected = {
        "suffix": [0.9 + 0.72 + 0.504, 0.72 + 0.504, 0.504],
        "prefix": [0.9, 0.72, 0.504],
        "continuation": [(0.9 + 0.72 + 0.504) / 0.9, (0.72 + 0.504) / 0.72, 1.0],
    }
    for weight, w in expected.items():
        got = DPaceCE(0.5, weight).weights(p)
        torch.testing.assert_close(got, torch.tensor([w], dtype=torch.float64))
    # alpha = 1: every s_k = 1, so W_k = K - k + 1 whatever the drafter predicts
    torch.testing.assert_close(DPaceCE(1.0).weights(p), torch.tensor([[3.0, 2.0, 1.0]], dtype=torch.float64))


def test_dpace_loss_is_the_suffix_weighted_ce_summed_per_block():
    alpha = 0.3
    per_block = []
    for n in range(2):
        s = [(1 - alpha) * prob(n, k) + alpha for k in range(3)]
        prefix = [s[0], s[0] * s[1], s[0] * s[1] * s[2]]
        per_block.append(sum(sum(prefix[k:]) * ce(n, k) for k in range(3)))
    assert DPaceCE(alpha)(LOGITS, Y).item() == pytest.approx(sum(per_block) / 2, rel=1e-6)


def test_dpace_weights_are_detached_and_alpha_zero_follows_the_chain_gradient():
    """W_k = sum_(j>=k) P_j = d E[tau] / d log p_k, so with alpha = 0 and no gradient through W,
    grad (sum_k W_k CE_k) = -grad E[tau] = K grad ChainLoss."""
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(3, 4, 6, generator=g, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, 6, (3, 4), generator=g)
    (dpace,) = torch.autograd.grad(DPaceCE(0.0)(logits, targets), logits)
    (chain,) = torch.autograd.grad(ChainLoss()(logits, targets), logits)
    torch.testing.assert_close(dpace, 4 * chain)
    # with weights treated as constants the gradient is that of sum_k W_k CE_k at fixed W
    w = DPaceCE(0.5).weights(torch.exp(-token_ce(logits, targets)))
    (fixed,) = torch.autograd.grad((w.detach() * token_ce(logits, targets)).sum(-1).mean(), logits)
    (got,) = torch.autograd.grad(DPaceCE(0.5)(logits, targets), logits)
    torch.testing.assert_close(got, fixed)


def test_dpace_is_usable_as_a_yaml_class_path():
    jsonargparse = pytest.importorskip("jsonargparse")  # the training CLI's parser
    parser = jsonargparse.ArgumentParser()
    parser.add_argument("--loss", type=DrafterLossMix)
    config = parser.parse_string(
        "loss:\n  class_path: dlm.core.losses.DrafterLossMix\n  init_args:\n    terms:\n"
        "      - class_path: dlm.core.losses.DPaceCE\n        init_args: {alpha: 0.25, weight: prefix}\n"
    )
    instantiate = getattr(parser, "instantiate", None) or parser.instantiate_classes  # renamed in 4.49
    (term,) = instantiate(config).loss.terms
    assert isinstance(term, DPaceCE) and (term.alpha, term.weight) == (0.25, "prefix")


def test_first_error_focal_scores_only_the_first_wrong_position():
    g = 2.0
    # block 0 first goes wrong at position 2 (index 1), block 1 at position 3 (index 2)
    expected = ((1 - prob(0, 1)) ** g * ce(0, 1) + (1 - prob(1, 2)) ** g * ce(1, 2)) / 2
    assert FirstErrorFocal(g)(LOGITS, Y).item() == pytest.approx(expected, rel=1e-6)
    assert FirstErrorFocal(0.0)(LOGITS, Y).item() == pytest.approx((ce(0, 1) + ce(1, 2)) / 2, rel=1e-6)


def test_first_error_focal_is_zero_with_zero_gradient_when_every_draft_is_right():
    logits = LOGITS.clone().requires_grad_()
    loss = FirstErrorFocal()(logits, logits.argmax(-1))
    loss.backward()
    assert loss.item() == 0.0
    assert torch.count_nonzero(logits.grad) == 0


def test_chain_greedy_is_minus_the_expected_accepted_length_over_k():
    expected_tau = [
        prob(n, 0) + prob(n, 0) * prob(n, 1) + prob(n, 0) * prob(n, 1) * prob(n, 2) for n in range(2)
    ]
    assert ChainLoss()(LOGITS, Y).item() == pytest.approx(-sum(expected_tau) / 2 / 3, rel=1e-6)


def test_chain_sampling_uses_the_acceptance_rate_against_the_target_distribution():
    expected_tau = [
        alpha(n, 0) + alpha(n, 0) * alpha(n, 1) + alpha(n, 0) * alpha(n, 1) * alpha(n, 2) for n in range(2)
    ]
    loss = ChainLoss(sampling=True)(LOGITS, Y, TARGET_LOGITS)
    assert loss.item() == pytest.approx(-sum(expected_tau) / 6, rel=1e-6)


def test_chain_loss_of_a_perfect_drafter_is_minus_one():
    confident = torch.nn.functional.one_hot(Y, 3).double() * 100
    assert ChainLoss()(confident, Y).item() == pytest.approx(-1.0)


@pytest.mark.parametrize("sampling", [False, True], ids=["greedy", "sampling"])
def test_chain_gradient_matches_finite_differences(sampling):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 4, 5, generator=g, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, 5, (2, 4), generator=g)
    target_logits = torch.randn(2, 4, 5, generator=g, dtype=torch.float64)
    loss = ChainLoss(sampling)
    assert torch.autograd.gradcheck(
        lambda x: loss(x, targets, target_logits), (logits,), eps=1e-6, atol=1e-8, fast_mode=True
    )
    # and by hand, central differences on a few coordinates
    (grad,) = torch.autograd.grad(loss(logits, targets, target_logits), logits)
    for index in [(0, 0, 0), (1, 2, 3), (1, 3, 4)]:
        bump = torch.zeros_like(logits)
        bump[index] = 1e-6
        with torch.no_grad():
            up, down = (
                loss(logits + bump, targets, target_logits),
                loss(logits - bump, targets, target_logits),
            )
        assert grad[index].item() == pytest.approx(((up - down) / 2e-6).item(), abs=1e-8)


def test_soft_label_terms_by_hand():
    kl = tv = nla = 0.0
    for n in range(2):
        for k in range(3):
            p, q = softmax(TARGET_ROWS[n][k]), softmax(ROWS[n][k])
            kl += sum(a * math.log(a / b) for a, b in zip(p, q))
            tv += 0.5 * sum(abs(a - b) for a, b in zip(p, q))
            nla -= math.log(alpha(n, k))
    assert ForwardKL()(LOGITS, Y, TARGET_LOGITS).item() == pytest.approx(kl / 6, rel=1e-6)
    assert TotalVariation()(LOGITS, Y, TARGET_LOGITS).item() == pytest.approx(tv / 6, rel=1e-6)
    assert NegLogAcceptance()(LOGITS, Y, TARGET_LOGITS).item() == pytest.approx(nla / 6, rel=1e-6)


def test_mix_is_the_weighted_sum_and_logs_each_term():
    mix = DrafterLossMix(
        [UniformCE(), ChainLoss(), PositionalCE(3.0), PositionalCE(1.0)], [1.0, 0.5, 2.0, 0.0]
    )
    total, parts = mix.parts(LOGITS, Y)
    assert list(parts) == ["uniform_ce", "chain", "positional", "positional_2"]
    expected = UniformCE()(LOGITS, Y) + 0.5 * ChainLoss()(LOGITS, Y) + 2.0 * PositionalCE(3.0)(LOGITS, Y)
    torch.testing.assert_close(total, expected)
    torch.testing.assert_close(mix(LOGITS, Y), expected)
    assert not mix.needs_target_logits
    assert DrafterLossMix([UniformCE(), ChainLoss(sampling=True)]).needs_target_logits


def test_bfloat16_logits_are_scored_in_float32():
    loss = UniformCE()(LOGITS.bfloat16(), Y)
    assert loss.dtype == torch.float32


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: PositionalCE(0.0), "gamma must be a positive number, got 0.0"),
        (lambda: PositionalCE(-1), "gamma must be a positive number, got -1"),
        (lambda: FirstErrorFocal(-0.5), "focus must be a non-negative number"),
        (lambda: DPaceCE(1.5), "alpha must be a number in"),
        (
            lambda: DPaceCE(0.5, "suffix_sum"),
            "weight must be 'suffix', 'prefix' or 'continuation', got 'suffix_sum'",
        ),
        (lambda: DrafterLossMix([]), "at least one loss term"),
        (lambda: DrafterLossMix([UniformCE()], [1.0, 2.0]), "1 terms but 2 weights"),
        (lambda: DrafterLossMix([UniformCE()], [-1.0]), "weight must be a non-negative number"),
        (lambda: DrafterLossMix(["uniform_ce"]), "must be DrafterLoss objects"),
        (lambda: ForwardKL()(LOGITS, Y), "ForwardKL needs the target's logits"),
        (lambda: UniformCE()(LOGITS, Y[:, :2]), "targets (blocks, K)"),
        (lambda: TotalVariation()(LOGITS, Y, TARGET_LOGITS[:, :2]), "must have the drafter logits' shape"),
    ],
)
def test_bad_input_is_a_clear_error(make, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        make()
