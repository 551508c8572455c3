"""Drafter losses over draft blocks (blocks, K, vocab): cross-entropy variants, the chain loss,
soft-label terms, and their weighted mix."""

from dlm.core.losses.drafter.base import DrafterLoss
from dlm.core.losses.drafter.chain import ChainLoss
from dlm.core.losses.drafter.cross_entropy import DPaceCE, FirstErrorFocal, PositionalCE, UniformCE
from dlm.core.losses.drafter.mix import DrafterLossMix
from dlm.core.losses.drafter.soft import ForwardKL, NegLogAcceptance, TotalVariation

__all__ = [
    "ChainLoss",
    "DPaceCE",
    "DrafterLoss",
    "DrafterLossMix",
    "FirstErrorFocal",
    "ForwardKL",
    "NegLogAcceptance",
    "PositionalCE",
    "TotalVariation",
    "UniformCE",
]
