"""The tri-mode loss: masked diffusion on the noisy half plus next-token CE on the clean half of one
[x_t ; x_0] forward."""

from __future__ import annotations

from torch import Tensor

from dlm.core.losses.autoregressive import AutoregressiveLoss
from dlm.core.losses.masked_diffusion import MaskedDiffusionLoss


class HybridLoss:
    """diffusion_weight * masked_diffusion(logits[:, :L]) + ar_weight * autoregressive(logits[:, L:])."""

    def __init__(
        self,
        diffusion_weight: float = 1.0,
        ar_weight: float = 1.0,
        diffusion: MaskedDiffusionLoss | None = None,
    ) -> None:
        self.diffusion_weight, self.ar_weight = diffusion_weight, ar_weight
        self.diffusion = diffusion or MaskedDiffusionLoss()
        self.autoregressive = AutoregressiveLoss()

    def terms(
        self,
        logits: Tensor,
        clean: Tensor,
        corrupted: Tensor,
        weights: Tensor,
        block_size: int,
        token_shift: bool = True,
        loss_mask: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """(masked-diffusion loss of the noisy half, AR loss of the clean half), unweighted; with
        `loss_mask` (batch, L) both score the marked tokens only."""
        length = clean.shape[1]
        if logits.shape[1] != 2 * length:
            raise ValueError(
                f"HybridLoss needs logits over [x_t ; x_0] of length {2 * length}, got {logits.shape[1]}"
            )
        diffusion = self.diffusion(
            logits[:, :length], clean, corrupted, weights, block_size, token_shift, loss_mask=loss_mask
        )
        return diffusion, self.autoregressive(logits[:, length:], clean, loss_mask)

    def __call__(
        self,
        logits: Tensor,
        clean: Tensor,
        corrupted: Tensor,
        weights: Tensor,
        block_size: int,
        token_shift: bool = True,
        loss_mask: Tensor | None = None,
    ) -> Tensor:
        diffusion, ar = self.terms(logits, clean, corrupted, weights, block_size, token_shift, loss_mask)
        return self.diffusion_weight * diffusion + self.ar_weight * ar
