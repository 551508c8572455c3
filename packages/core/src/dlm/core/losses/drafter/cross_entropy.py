"""Cross-entropy on the target's tokens: the position-uniform baseline, DFlash's decay-weighted CE,
D-PACE's acceptance-weighted CE, and the first-error focal term (see apps/drafter/README.md)."""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

from dlm.core.losses.drafter.base import DrafterLoss, non_negative, positive, token_ce


class UniformCE(DrafterLoss):
    """mean_k CE_k: every draft position counts the same (the baseline)."""

    name = "uniform_ce"

    def compute(self, logits: Tensor, targets: Tensor, target_logits: Tensor | None) -> Tensor:
        return token_ce(logits, targets).mean()


class PositionalCE(DrafterLoss):
    """sum_k w_k CE_k / sum_k w_k with w_k = exp(-(k-1)/gamma): DFlash's decay-weighted CE (its
    `loss_decay_gamma`; the same weights, normalised per block here, over all tokens there, equal
    when every block has its K positions). A draft position only pays off when every earlier one
    is accepted, so early positions weigh more. gamma -> inf is UniformCE.

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


class DPaceCE(DrafterLoss):
    """D-PACE (SpecForge's DFlash trainer): sum_k W_k CE_k per block, mean over blocks, with weights
    from the drafter's own detached probabilities of the labels. Smoothed s_k = (1 - alpha) p_k +
    alpha, prefix products P_k = prod_(i<=k) s_i (the chance, by the drafter's own estimate, that
    drafts 1..k are all accepted), and

        weight="suffix" (D-PACE, the default): W_k = sum_(j>=k) P_j, the expected accepted drafts
            that depend on position k: d E[tau] / d log p_k of E[tau] = sum_j P_j, so with
            alpha = 0 the gradient is K times ChainLoss's (tested);
        weight="prefix" (SpecForge's "cumulative-confidence-only"): W_k = P_k;
        weight="continuation" (SpecForge's "continuation-value-only"): W_k = sum_(j>=k) P_j / P_k.

    Not normalised by sum_k W_k (as in SpecForge), so the scale grows as the drafter improves
    (up to K (K+1) / 2 for "suffix"). alpha keeps late positions in the loss from a poor start.

    Args:
        alpha: smoothing in [0, 1] (SpecForge's default 0.5; 1 gives W_k = K - k + 1).
        weight: "suffix", "prefix" or "continuation".
    """

    name = "dpace"

    def __init__(
        self, alpha: float = 0.5, weight: Literal["suffix", "prefix", "continuation"] = "suffix"
    ) -> None:
        if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be a number in [0, 1], got {alpha!r}")
        if weight not in ("suffix", "prefix", "continuation"):
            raise ValueError(f"weight must be 'suffix', 'prefix' or 'continuation', got {weight!r}")
        self.alpha, self.weight = float(alpha), weight

    def weights(self, p: Tensor) -> Tensor:
        """W (blocks, K) from the drafter's probabilities p (blocks, K) of the labels; no gradient."""
        prefix = ((1 - self.alpha) * p.detach() + self.alpha).cumprod(-1)
        if self.weight == "prefix":
            return prefix
        suffix = prefix.flip(-1).cumsum(-1).flip(-1)
        if self.weight == "suffix":
            return suffix
        return suffix / prefix.clamp_min(torch.finfo(prefix.dtype).tiny)

    def compute(self, logits: Tensor, targets: Tensor, target_logits: Tensor | None) -> Tensor:
        ce = token_ce(logits, targets)
        return (self.weights(torch.exp(-ce)) * ce).sum(-1).mean()


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
