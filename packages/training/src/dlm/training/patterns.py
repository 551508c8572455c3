"""Attention patterns for diffusion training: how the noisy sequence is shown to the model.

A pattern turns (noisy, clean) token rows into the final hidden states of the noisy positions;
the module applies the output head and the loss. Chosen in YAML by class_path. With per-token
document ids the pattern is ANDed with a same-document mask, so packed documents do not see each
other.
"""

from __future__ import annotations

import torch
from torch import Tensor

from dlm.attention import Bidirectional, BlockDiffusion, Causal, Mask
from dlm.attention.masks import SameDocument
from dlm.core import Transformer


class AttentionPattern:
    cross_block_targets: bool = True
    """Whether the next block's anchor is a fair target at a noisy block's last position (it must
    not be visible to the noisy sequence)."""

    def noisy_hidden(
        self, model: Transformer, noisy: Tensor, clean: Tensor, block_size: int, doc_ids: Tensor | None = None
    ) -> Tensor:
        """Final hidden states (batch, L, dim) of the noisy positions; doc_ids (batch, L) restricts
        attention to each token's own document."""
        raise NotImplementedError


def positions(batch: int, length: int, device: torch.device) -> Tensor:
    return torch.arange(length, device=device).expand(batch, -1)


def causal(doc_ids: Tensor | None = None) -> Mask:
    """The AR mask, within documents when doc_ids (batch, L) are given."""
    return Causal() if doc_ids is None else Causal() & SameDocument(doc_ids)


class BlockCausalPattern(AttentionPattern):
    """BD3-LM / Efficient-DLM block-wise attention over [x_t ; x_0]: each noisy block attends to
    itself (bidirectionally) and to the clean blocks before it; the clean half is block-causal.
    Both halves sit at positions 0..L-1. This is the context a cached block decoder gives a draft
    block, so the AR model's causal prefix attention is kept."""

    cross_block_targets = True

    def noisy_hidden(
        self, model: Transformer, noisy: Tensor, clean: Tensor, block_size: int, doc_ids: Tensor | None = None
    ) -> Tensor:
        batch, length = noisy.shape
        tokens = torch.cat([noisy, clean], dim=1)
        pos = positions(batch, length, noisy.device).repeat(1, 2)
        mask: Mask = BlockDiffusion(block_size, length)
        if doc_ids is not None:
            mask = mask & SameDocument.for_noisy_clean(doc_ids)
        return model.hidden(tokens, pos, mask)[:, :length]


class BidirectionalPattern(AttentionPattern):
    """LLaDA-style: x_t alone with full attention (no clean half). Blocks still decide the
    corruption, but every position sees the whole noisy sequence, future blocks included, so the
    next block's anchor is visible and is not a target."""

    cross_block_targets = False

    def noisy_hidden(
        self, model: Transformer, noisy: Tensor, clean: Tensor, block_size: int, doc_ids: Tensor | None = None
    ) -> Tensor:
        batch, length = noisy.shape
        mask: Mask = Bidirectional() if doc_ids is None else SameDocument(doc_ids)
        return model.hidden(noisy, positions(batch, length, noisy.device), mask)
