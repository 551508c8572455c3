"""Soft-label terms against the target's full distribution p (the baselines vLLM's speculators
project offers): forward KL(p || q), total variation 1 - alpha and -log alpha, with
alpha = sum_v min(p(v), q(v)) the acceptance rate of lossless speculative sampling."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from dlm.core.losses.drafter.base import DrafterLoss, acceptance


class ForwardKL(DrafterLoss):
    """mean over blocks and positions of KL(p || q) = sum_v p(v) (log p(v) - log q(v))."""

    name = "forward_kl"
    needs_target_logits = True

    def compute(self, logits: Tensor, targets: Tensor, target_logits: Tensor | None) -> Tensor:
        log_p = F.log_softmax(target_logits, -1)
        return (log_p.exp() * (log_p - F.log_softmax(logits, -1))).sum(-1).mean()


class TotalVariation(DrafterLoss):
    """mean of 1 - alpha = TV(p, q) = 1/2 sum_v |p(v) - q(v)|: the rejection rate at T = 1."""

    name = "total_variation"
    needs_target_logits = True

    def compute(self, logits: Tensor, targets: Tensor, target_logits: Tensor | None) -> Tensor:
        return (1 - acceptance(logits, target_logits)).mean()


class NegLogAcceptance(DrafterLoss):
    """mean of -log alpha: like 1 - alpha, but with more gradient where acceptance is low."""

    name = "neg_log_acceptance"
    needs_target_logits = True

    def __init__(self, floor: float = 1e-6) -> None:
        self.floor = floor

    def compute(self, logits: Tensor, targets: Tensor, target_logits: Tensor | None) -> Tensor:
        return -acceptance(logits, target_logits).clamp_min(self.floor).log().mean()
