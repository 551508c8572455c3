"""The drafter's left-to-right losses on a diffusion model's whole draft blocks (tri-mode)."""

from __future__ import annotations

import torch
from torch import Tensor

from dlm.core.losses.drafter import DrafterLoss, DrafterLossMix
from dlm.core.losses.masked_diffusion import MaskedDiffusionLoss


class DraftBlockLoss(MaskedDiffusionLoss):
    """Masked diffusion in which every whole draft block is scored by a drafter loss.

    A noisy block whose positions 1..B-1 are all masked (the anchor rule keeps position 0) is the
    draft block `[t, MASK x K]`, K = B-1, that self-speculation verifies left to right: its K
    predictions go to `block_loss` (UniformCE, PositionalCE, FirstErrorFocal, ChainLoss, DPaceCE or
    a DrafterLossMix of them) as one (blocks, K) row each, with the data tokens as labels (on data
    distilled from the frozen base they are the verifier's own greedy choices). Every other target
    (corrupted positions of partly masked blocks, cross-block anchors) keeps the masked-diffusion
    term. The loss is masked_diffusion(rest) + weight * block_loss(whole blocks).

    Normalisation: masked diffusion divides its sum by batch x L tokens; a drafter loss is a mean
    over blocks and (for UniformCE) positions. On a batch of whole blocks only, unweighted UniformCE
    is therefore the unweighted masked-diffusion term (without cross-block targets) times B/(B-1).

    Args:
        block_loss: The drafter loss of the whole blocks.
        weight: Its weight beside the masked-diffusion term of the rest.
        weighted, cross_block_weight: As MaskedDiffusionLoss, for the rest.
    """

    def __init__(
        self,
        block_loss: DrafterLoss | DrafterLossMix,
        weight: float = 1.0,
        weighted: bool = True,
        cross_block_weight: float = 1.0,
    ) -> None:
        super().__init__(weighted, cross_block_weight)
        if not isinstance(block_loss, DrafterLoss | DrafterLossMix):
            raise ValueError(f"block_loss must be a DrafterLoss or DrafterLossMix, got {block_loss!r}")
        if block_loss.needs_target_logits:
            raise ValueError(
                f"block_loss {type(block_loss).__name__} needs a target's logits; a diffusion model's "
                "draft blocks have labels only: use UniformCE, PositionalCE, FirstErrorFocal, ChainLoss or DPaceCE"
            )
        if isinstance(weight, bool) or not isinstance(weight, int | float) or weight < 0:
            raise ValueError(f"weight must be a non-negative number, got {weight!r}")
        self.block_loss, self.weight = block_loss, float(weight)

    def terms(
        self,
        logits: Tensor,
        clean: Tensor,
        corrupted: Tensor,
        weights: Tensor,
        block_size: int,
        token_shift: bool = True,
        cross_block: bool = True,
        loss_mask: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """(masked diffusion of the rest, drafter loss of the whole blocks), unweighted."""
        if loss_mask is not None:
            corrupted = corrupted & loss_mask
        whole = whole_blocks(corrupted, block_size)
        rest = corrupted & ~whole.repeat_interleave(block_size, dim=1)
        diffusion = super().__call__(
            logits, clean, rest, weights, block_size, token_shift, cross_block, loss_mask
        )
        rows, blocks = whole.nonzero(as_tuple=True)
        if not len(rows):
            return diffusion, logits.sum() * 0.0  # keeps the graph (and DDP's gradient sync) intact
        positions = blocks.unsqueeze(1) * block_size + torch.arange(1, block_size, device=clean.device)
        read = positions - 1 if token_shift else positions
        block_logits = logits[rows.unsqueeze(1), read]
        return diffusion, self.block_loss(block_logits, clean[rows.unsqueeze(1), positions])

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
        diffusion, blocks = self.terms(
            logits, clean, corrupted, weights, block_size, token_shift, cross_block, loss_mask
        )
        return diffusion + self.weight * blocks


def whole_blocks(corrupted: Tensor, block_size: int) -> Tensor:
    """(batch, n_blocks) bool: every position of the block but its anchor is corrupted."""
    batch, length = corrupted.shape
    if length % block_size:
        raise ValueError(f"sequence length {length} is not a multiple of block_size {block_size}")
    return corrupted.view(batch, length // block_size, block_size)[:, :, 1:].all(-1)
