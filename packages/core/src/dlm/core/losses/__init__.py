"""Loss strategies: masked diffusion, autoregressive, and their tri-mode hybrid."""

from dlm.core.losses.autoregressive import AutoregressiveLoss
from dlm.core.losses.hybrid import HybridLoss
from dlm.core.losses.masked_diffusion import MaskedDiffusionLoss, Targets, target_cross_entropy

__all__ = ["AutoregressiveLoss", "HybridLoss", "MaskedDiffusionLoss", "Targets", "target_cross_entropy"]
