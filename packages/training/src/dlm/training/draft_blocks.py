"""Deprecated alias of dlm.training.drafter.blocks, removed in the next release."""

from dlm.training.drafter.blocks import (
    DraftBlocks,
    draft_blocks,
    drafter_logits,
    noisy_tokens,
    target_hidden,
    target_logits,
)

__all__ = ["DraftBlocks", "draft_blocks", "drafter_logits", "noisy_tokens", "target_hidden", "target_logits"]
