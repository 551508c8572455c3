"""The chain loss: a differentiable surrogate of the expected accepted draft length (our formulation)."""

from __future__ import annotations

from torch import Tensor

from dlm.core.losses.drafter.base import DrafterLoss, acceptance, token_ce


class ChainLoss(DrafterLoss):
    """-E[tau] / K with E[tau] = sum_(k=1..K) prod_(i<=k) a_i: draft k is used only if drafts 1..k
    are all accepted, so the expected number of accepted drafts is the sum of the prefix products of
    the per-position acceptance probabilities a_i (treated as independent). In [-1, 0].

    a_i = p_i = q_theta(y_i) (greedy verification: the draft is the argmax, and p_i is the drafter's
    soft stand-in for "argmax = y_i"), or, with `sampling`, a_i = sum_v min(p(v), q(v)) with p the
    target's distribution (the acceptance probability of lossless speculative sampling at T = 1).

    The gradient of a late position is scaled by the acceptance of all earlier ones, so from a poor
    start it is tiny: mix it with a CE term (DrafterLossMix) for early gradient.
    """

    name = "chain"

    def __init__(self, sampling: bool = False) -> None:
        self.sampling = sampling
        self.needs_target_logits = sampling
        self.name = "chain_sampling" if sampling else "chain"

    def compute(self, logits: Tensor, targets: Tensor, target_logits: Tensor | None) -> Tensor:
        a = acceptance(logits, target_logits) if self.sampling else (-token_ce(logits, targets)).exp()
        expected_tau = a.cumprod(-1).sum(-1)
        return -(expected_tau / logits.shape[1]).mean()
