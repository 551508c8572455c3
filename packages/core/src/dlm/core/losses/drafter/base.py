"""What every drafter loss sees: one row per draft block, K draft positions, the target's tokens.

A draft block is the drafter's view `[t, MASK x K]` after a committed token t. For row n and draft
position k (1-based in the formulas, 0-based in tensors):

- `logits[n, k]`: the drafter's logits for the k-th token after t (whatever its token shift: the
  caller gathers the right positions);
- `targets[n, k]`: y_k, the target model's greedy token there (distilled or teacher-forced);
- `target_logits[n, k]` (optional): the target's logits for the same token, so p = softmax of them
  is the target's full distribution (soft labels, the sampling form of the chain loss).

q_theta = softmax(logits) is the drafter's distribution and p_k = q_theta(y_k) its probability of
the target's token. Every loss returns a scalar mean over rows.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


class DrafterLoss:
    """Base class of the drafter loss terms (one small class each, combined by DrafterLossMix)."""

    name: str = "drafter_loss"
    """Key under which the term is logged."""
    needs_target_logits: bool = False
    """Whether the term reads the target's full distribution (the module then computes it)."""

    def __call__(self, logits: Tensor, targets: Tensor, target_logits: Tensor | None = None) -> Tensor:
        check_blocks(logits, targets, target_logits)
        if self.needs_target_logits and target_logits is None:
            raise ValueError(f"{type(self).__name__} needs the target's logits (target_logits=None)")
        return self.compute(upcast(logits), targets, None if target_logits is None else upcast(target_logits))

    def compute(self, logits: Tensor, targets: Tensor, target_logits: Tensor | None) -> Tensor:
        raise NotImplementedError


def check_blocks(logits: Tensor, targets: Tensor, target_logits: Tensor | None) -> None:
    if logits.dim() != 3 or targets.shape != logits.shape[:2]:
        raise ValueError(
            f"drafter losses need logits (blocks, K, vocab) and targets (blocks, K); got logits "
            f"{tuple(logits.shape)} and targets {tuple(targets.shape)}"
        )
    if target_logits is not None and target_logits.shape != logits.shape:
        raise ValueError(
            f"target_logits {tuple(target_logits.shape)} must have the drafter logits' shape {tuple(logits.shape)}"
        )


def upcast(x: Tensor) -> Tensor:
    """float32 for half precisions (the softmax and products need it); float64 stays float64."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def token_ce(logits: Tensor, targets: Tensor) -> Tensor:
    """CE_k = -log q_theta(y_k) per row and position: (blocks, K)."""
    return -logits.log_softmax(-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)


def acceptance(logits: Tensor, target_logits: Tensor) -> Tensor:
    """alpha_k = sum_v min(p(v), q(v)), the probability that lossless speculative sampling accepts a
    draft sampled from q at temperature 1: (blocks, K)."""
    return torch.minimum(F.softmax(logits, -1), F.softmax(target_logits, -1)).sum(-1)


def positive(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return float(value)


def non_negative(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise ValueError(f"{name} must be a non-negative number, got {value!r}")
    return float(value)
