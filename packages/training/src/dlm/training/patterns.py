"""Attention patterns for diffusion training: how the noisy sequence is shown to the model.

A pattern turns (noisy, clean) token rows into the final hidden states of the noisy positions;
the module applies the output head and the loss. Chosen in YAML by class_path. With per-token
document ids the pattern is ANDed with a same-document mask, so packed documents do not see each
other. The [x_t ; x_0] patterns also give the states of both halves (`hidden`): tri-mode reads AR
logits off the clean half.
"""

from __future__ import annotations

import torch
from torch import Tensor

from dlm.attention import Bidirectional, BlockDiffusion, Causal, Mask, TriMode, TriModeNoisy
from dlm.attention.masks import SameDocument
from dlm.core import Transformer
from dlm.core.cache import PrefixCache
from dlm.core.checkpoint import CleanStream


class AttentionPattern:
    cross_block_targets: bool = True
    """Whether the next block's anchor is a fair target at a noisy block's last position (it must
    not be visible to the noisy sequence)."""
    clean: CleanStream | None = None
    """How the clean half attends, as the model's TrainingRecord states it for block decoders:
    "block" (block-causal), "causal" (token-causal) or None (no clean half)."""

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


class NoisyCleanPattern(AttentionPattern):
    """[x_t ; x_0] in one forward, both halves at positions 0..L-1, under `mask` (ANDed with
    SameDocument.for_noisy_clean when doc_ids are given)."""

    cross_block_targets = True

    def mask(self, block_size: int, length: int) -> Mask:
        raise NotImplementedError

    def hidden(
        self,
        model: Transformer,
        noisy: Tensor,
        clean: Tensor,
        block_size: int,
        doc_ids: Tensor | None = None,
        draft: bool = False,
    ) -> Tensor:
        """Final hidden states (batch, 2L, dim) of both halves: the noisy one, then the clean one.
        `draft` marks the noisy half as draft tokens (a draft adapter acts there only)."""
        batch, length = noisy.shape
        tokens = torch.cat([noisy, clean], dim=1)
        pos = positions(batch, length, noisy.device).repeat(1, 2)
        mask = self.mask(block_size, length)
        if doc_ids is not None:
            mask = mask & SameDocument.for_noisy_clean(doc_ids)
        gate = None
        if draft:
            gate = torch.cat(
                [torch.ones_like(noisy, dtype=torch.bool), torch.zeros_like(clean, dtype=torch.bool)], 1
            )
        return model.hidden(tokens, pos, mask, draft=gate)

    def noisy_hidden(
        self, model: Transformer, noisy: Tensor, clean: Tensor, block_size: int, doc_ids: Tensor | None = None
    ) -> Tensor:
        return self.hidden(model, noisy, clean, block_size, doc_ids)[:, : noisy.shape[1]]


class BlockCleanPattern(NoisyCleanPattern):
    """BD3-LM / Efficient-DLM block-wise attention over [x_t ; x_0]: each noisy block attends to
    itself (bidirectionally) and to the clean blocks before it; the clean half is block-causal.
    Both halves sit at positions 0..L-1. This is the context a cached block decoder gives a draft
    block, so the AR model's causal prefix attention is kept."""

    clean = "block"

    def mask(self, block_size: int, length: int) -> Mask:
        return BlockDiffusion(block_size, length)


class CausalCleanPattern(NoisyCleanPattern):
    """Tri-mode (Nemotron) attention over [x_t ; x_0]: each noisy block attends to itself
    (bidirectionally) and to the clean text before its block, token-causally; the clean half is
    token-causal and never sees the noisy half, so it is exactly the AR forward. One forward gives
    diffusion states on the noisy half and AR states on the clean half (TriModeModule), and is the
    context DrafterSpeculativeDecoder gives a drafter's block (the drafter's training layout)."""

    clean = "causal"

    def mask(self, block_size: int, length: int) -> Mask:
        return TriMode(block_size, length)

    def hidden_over_frozen_clean(
        self, model: Transformer, noisy: Tensor, clean: Tensor, block_size: int, doc_ids: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """(noisy states, the adapter on; clean states, without gradients), equal to hidden(...,
        draft=True) when only a draft adapter trains: the clean half is the base's AR forward, so it
        runs first under no_grad into a KV cache and the noisy half attends to it (TriModeNoisy).
        No gradient flows through the clean half: about half a tri-mode step's work."""
        batch, length = noisy.shape
        pos = positions(batch, length, noisy.device)
        cache = PrefixCache()
        with torch.no_grad():
            clean_hidden = model.hidden(clean, pos, causal(doc_ids), cache)
        mask: Mask = TriModeNoisy(block_size, length)
        if doc_ids is not None:
            mask = mask & SameDocument.for_noisy_clean(doc_ids)
        gate = torch.ones_like(noisy, dtype=torch.bool)
        return model.hidden(noisy, pos, mask, cache, commit=False, draft=gate), clean_hidden


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
