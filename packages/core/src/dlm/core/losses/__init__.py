"""Loss strategies: masked diffusion, autoregressive, and their tri-mode hybrid."""

from dlm.core.losses.autoregressive import AutoregressiveLoss
from dlm.core.losses.draft_blocks import DraftBlockLoss
from dlm.core.losses.drafter import (
    ChainLoss,
    DPaceCE,
    DrafterLoss,
    DrafterLossMix,
    FirstErrorFocal,
    ForwardKL,
    NegLogAcceptance,
    PositionalCE,
    TotalVariation,
    UniformCE,
)
from dlm.core.losses.hybrid import HybridLoss
from dlm.core.losses.masked_diffusion import MaskedDiffusionLoss, Targets, target_cross_entropy

__all__ = [
    "AutoregressiveLoss",
    "ChainLoss",
    "DPaceCE",
    "DraftBlockLoss",
    "DrafterLoss",
    "DrafterLossMix",
    "FirstErrorFocal",
    "ForwardKL",
    "HybridLoss",
    "MaskedDiffusionLoss",
    "NegLogAcceptance",
    "PositionalCE",
    "Targets",
    "TotalVariation",
    "UniformCE",
    "target_cross_entropy",
]
