"""The masked-diffusion loss over the noisy half, with the token-shift and anchor conventions."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor


class Targets(NamedTuple):
    """The predictions the loss scores, one entry each (flat over the batch)."""

    rows: Tensor
    """Batch row of each target."""
    logit_positions: Tensor
    """Position whose logits predict it (j - 1 with token shift, j without)."""
    positions: Tensor
    """Position j of the target token in the clean sequence."""
    weights: Tensor
    """Loss weight of each target."""
    cross_block: Tensor
    """True for a next block's anchor predicted at a noisy block's last position."""


class MaskedDiffusionLoss:
    """sum over targets of weight * CE, divided by the number of tokens (batch x L).

    Targets are the corrupted positions, each weighted by its corruption weight (1/t, or 1/π_i(m)
    for PositionDependent; 1 when `weighted` is False). With token shift (the model config's `token_shift`, on by default) the
    logit at j-1 predicts position j, and the anchor of every block after the first, predicted at
    the previous noisy block's last position, is a target too (weight `cross_block_weight`): a
    decoder reads "the token after the block" there. A pattern in which the noisy sequence shows
    that anchor (full attention over x_t) passes cross_block=False, since the target would be
    visible. Dividing by all tokens, not by the targets, makes the weighted sum an estimate of the
    per-token negative ELBO (MDLM, LLaDA). With `loss_mask` (batch, L; the answer tokens of
    self-distilled data) only marked positions are targets (cross-block anchors too) and the sum is
    divided by the number of marked tokens instead.
    """

    def __init__(self, weighted: bool = True, cross_block_weight: float = 1.0) -> None:
        if cross_block_weight < 0:
            raise ValueError(f"cross_block_weight must be >= 0, got {cross_block_weight!r}")
        self.weighted, self.cross_block_weight = weighted, cross_block_weight

    def targets(
        self,
        corrupted: Tensor,
        weights: Tensor,
        block_size: int,
        token_shift: bool = True,
        cross_block: bool = True,
        loss_mask: Tensor | None = None,
    ) -> Targets:
        """The scored predictions for a corruption mask `corrupted` (batch, L) and its `weights`."""
        weights = weights if self.weighted else corrupted.float()
        if loss_mask is not None:
            corrupted = corrupted & loss_mask
        if not token_shift:
            rows, pos = corrupted.nonzero(as_tuple=True)
            return Targets(rows, pos, pos, weights[rows, pos], torch.zeros_like(pos, dtype=torch.bool))
        length = corrupted.shape[1]
        selected = corrupted.clone()
        anchors = torch.zeros_like(corrupted)
        if cross_block and self.cross_block_weight > 0:
            anchors[:, block_size:length:block_size] = True
        if loss_mask is not None:
            anchors &= loss_mask
        selected |= anchors
        selected[:, 0] = False
        rows, pos = selected.nonzero(as_tuple=True)
        is_anchor = anchors[rows, pos]
        w = torch.where(
            is_anchor, torch.full_like(weights[rows, pos], self.cross_block_weight), weights[rows, pos]
        )
        return Targets(rows, pos - 1, pos, w, is_anchor)

    def __call__(
        self,
        logits: Tensor,
        clean: Tensor,
        corrupted: Tensor,
        weights: Tensor,
        block_size: int,
        token_shift: bool = True,
        cross_block: bool = True,
        loss_mask: Tensor | None = None,
    ) -> Tensor:
        """Scalar loss from the noisy sequence's logits (batch, L, V) and the clean tokens (batch, L)."""
        t = self.targets(corrupted, weights, block_size, token_shift, cross_block, loss_mask)
        ce = target_cross_entropy(logits, clean, t)
        scored = clean.numel() if loss_mask is None else loss_mask.sum().clamp(min=1)
        return (t.weights * ce).sum() / scored


def target_cross_entropy(logits: Tensor, clean: Tensor, targets: Targets) -> Tensor:
    """CE of each target, computed from the gathered rows of the logits only (float32)."""
    picked = logits[targets.rows, targets.logit_positions].float()
    return F.cross_entropy(picked, clean[targets.rows, targets.positions], reduction="none")
