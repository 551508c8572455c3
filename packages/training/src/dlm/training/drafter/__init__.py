"""The drafter experiment: a block-diffusion drafter trained to speculate for a frozen AR target
(module, draft-block layout, target, distillation, distilled data, offline accuracy)."""

from dlm.training.drafter.accuracy import DraftAccuracy
from dlm.training.drafter.blocks import (
    DraftBlocks,
    draft_blocks,
    drafter_logits,
    noisy_tokens,
    target_hidden,
    target_logits,
)
from dlm.training.drafter.data import DistilledDataModule, DistilledDataset
from dlm.training.drafter.distill import distill
from dlm.training.drafter.module import DrafterModule, check_pair
from dlm.training.drafter.target import Target, load_target

__all__ = [
    "DistilledDataModule",
    "DistilledDataset",
    "DraftAccuracy",
    "DraftBlocks",
    "DrafterModule",
    "Target",
    "check_pair",
    "distill",
    "draft_blocks",
    "drafter_logits",
    "load_target",
    "noisy_tokens",
    "target_hidden",
    "target_logits",
]
