"""The drafter's training layout: many draft blocks per sample, shown exactly as DrafterSpeculativeDecoder
shows one at decode time (our formulation; see apps/drafter/README.md).

A sample of L tokens is cut into blocks of B. Over [x_t ; x_0] with the TriMode mask (both halves at
positions 0..L-1):

- noisy half: every block is `[anchor, MASK x (B-1)]`, the anchor being the block's first token
  (never masked) and every other position masked, which is the decode-time state `[t, MASK x K]`;
- clean half: the text, token-causal. A noisy block sees itself (bidirectionally) and the clean
  text before its anchor, which is exactly what the drafter's cache holds at decode time: the
  committed text but the pending token t, cached by causal forwards (DrafterSpeculativeDecoder).

The label of draft position k (1..K) of the block anchored at a is the target's token at a + k.
With token shift the drafter's logit at a + k - 1 predicts it, without shift the logit at a + k
(as dlm.decoding's block_predictions reads them). A block is scored only when all K labels exist.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from dlm.attention import Causal, Mask
from dlm.attention.masks import SameDocument
from dlm.core import Transformer
from dlm.training.patterns import CausalCleanPattern, positions


@dataclass(frozen=True)
class DraftBlocks:
    """Where the scored draft positions are, flat over (sample, block)."""

    rows: Tensor
    """(N,) the sample of each scored block."""
    anchors: Tensor
    """(N,) the anchor position a of each scored block."""
    k: int
    """Draft positions per block."""

    @property
    def label_positions(self) -> Tensor:
        """(N, K) positions a + 1 .. a + K of the labels."""
        return self.anchors[:, None] + torch.arange(1, self.k + 1, device=self.anchors.device)

    def drafter_positions(self, token_shift: bool) -> Tensor:
        """(N, K) the drafter logits that predict the labels."""
        return self.label_positions - int(token_shift)

    def __len__(self) -> int:
        return int(self.rows.numel())


def draft_blocks(valid: Tensor, block_size: int, k: int) -> DraftBlocks:
    """The blocks whose K labels are all valid; valid (batch, L) marks positions that hold a label."""
    batch, length = valid.shape
    anchors = torch.arange(0, length, block_size, device=valid.device)
    inside = anchors + k < length
    anchors = anchors[inside]
    window = anchors[:, None] + torch.arange(1, k + 1, device=valid.device)  # (blocks, K)
    full = valid[:, window].all(-1)  # (batch, blocks)
    rows, index = full.nonzero(as_tuple=True)
    return DraftBlocks(rows, anchors[index], k)


def noisy_tokens(tokens: Tensor, block_size: int, mask_id: int) -> Tensor:
    """Every position but each block's first (the anchor) replaced by mask_id."""
    noisy = torch.full_like(tokens, mask_id)
    noisy[:, ::block_size] = tokens[:, ::block_size]
    return noisy


def drafter_logits(
    model: Transformer, tokens: Tensor, blocks: DraftBlocks, block_size: int, doc_ids: Tensor | None = None
) -> Tensor:
    """(N, K, vocab) the drafter's logits for the labels of the scored blocks (the output head runs
    on those positions only)."""
    noisy = noisy_tokens(tokens, block_size, model.config.mask_token_id)
    hidden = CausalCleanPattern().noisy_hidden(model, noisy, tokens, block_size, doc_ids)
    picked = hidden[blocks.rows[:, None], blocks.drafter_positions(model.config.token_shift)]
    return model.lm_head(picked)


def target_hidden(target: Transformer, tokens: Tensor, doc_ids: Tensor | None = None) -> Tensor:
    """(batch, L, dim) the target's final hidden states over the text, causally (no gradient)."""
    mask: Mask = Causal() if doc_ids is None else Causal() & SameDocument(doc_ids)
    with torch.no_grad():
        return target.hidden(tokens, positions(*tokens.shape, tokens.device), mask)


def target_logits(target: Transformer, hidden: Tensor, blocks: DraftBlocks) -> Tensor:
    """(N, K, vocab) the target's logits for each label: its AR logit at the position before it."""
    with torch.no_grad():
        return target.lm_head(hidden[blocks.rows[:, None], blocks.label_positions - 1])
