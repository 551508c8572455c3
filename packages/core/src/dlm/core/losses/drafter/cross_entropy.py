"""Cross-entropy on the target's tokens: the position-uniform baseline, positional weighting and the
first-error focal term (our formulations; see apps/drafter/README.md)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from dlm.core.losses.drafter.base import DrafterLoss, non_negative, positive, token_ce


class UniformCE(DrafterLoss):
    """mean_k CE_k: every draft position counts the same (the baseline)."""

    name = "uniform_ce"

    def compute(self, logits: Tensor, targets: Tensor, target_logits: Tensor | None) -> Tensor:
        return token_ce(logits, targets).mean()


class PositionalCE(DrafterLoss):
    """sum_k w_k CE_k / sum_k w_k with w_k = exp(-(k-1)/gamma): a draft position only pays off when
    every earlier one is accepted, so early positions weigh more. gamma -> inf is UniformCE.

    Args:
        gamma: decay length in positions (> 0); w_(1+gamma) = 1/e.
    """

    name = "positional"

    def __init__(self, gamma: float = 2.0) -> None:
        self.gamma = positive("gamma", gamma)

    def weights(self, k: int, device=None, dtype=torch.float32) -> Tensor:
        return torch.tensor([math.exp(-i / self.gamma) for i in range(k)], device=device, dtype=dtype)

    def compute(self, logits: Tensor, targets: Tensor, target_logits: Tensor | None) -> Tensor:
        w = self.weights(logits.shape[1], logits.device, logits.dtype)
        return (token_ce(logits, targets) * w).sum(-1).mean() / w.sum()


class FirstErrorFocal(DrafterLoss):
    """Per block: f = the first position whose drafter argmax differs from y_f; the term is
    (1 - p_f)^g CE_f, and 0 when the whole block is right. Mean over blocks (right blocks count as 0).
    The first error is where acceptance stops, so this spends the gradient there; the focal factor
    (not detached, as in the focal loss) down-weights errors the drafter is already close on.

    Args:
        focus: the focal exponent g (>= 0; 0 gives plain CE at the first error).
    """

    name = "first_error_focal"

    def __init__(self, focus: float = 2.0) -> None:
        self.focus = non_negative("focus", focus)

    def compute(self, logits: Tensor, targets: Tensor, target_logits: Tensor | None) -> Tensor:
        wrong = logits.argmax(-1) != targets  # (blocks, K)
        first = wrong & (wrong.cumsum(-1) == 1)  # one-hot at f, all False for an all-right block
        ce = token_ce(logits, targets)
        p = torch.exp(-ce)
        return ((1 - p).pow(self.focus) * ce * first).sum(-1).mean()
