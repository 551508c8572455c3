"""Block-diffusion decoding with the Fast-dLLM confidence rule and an exact block KV cache.

A block is `[t, MASK x (B-1)]` with t the pending token (anchor convention). Each forward runs the
block bidirectionally over the cache (Draft mask, not committed) and fills, among its masked
positions, every one whose confidence (the probability of the token it would take) exceeds the
threshold, or, if none does, exactly the most confident one. Positions that would never be emitted
(past the budget or a filled EOS) are not candidates. When the block is full its tokens are emitted
and its K/V are committed from its final tokens, in the model's clean-stream attention (`clean`).
The next anchor t' comes from:

- fold (default for token-shift models): the cross-block prediction at the block's last position.
  t' is one more masked position of the block, filled by the same rule in the same forwards as the
  others (it is emitted with the block, never for free), so it is known before the commit and the
  commit rides in the next block's first forward: `[block (commit) ; t', MASK x (B-1) (draft, sees
  the block)]`. (Carrying an unconfident t' masked into the next block instead would draft a block
  training never shows: the anchor rule never corrupts a block's first position.)
- no fold: a separate commit forward over the block, whose last (clean, next-token) logit gives t'
  (that forward's one prediction, so it commits exactly one token).

The comparison is strict (confidence > threshold): the most likely token's probability is
exp(0) / sum(exp), at most 1.0 in floating point even where it rounds to 1.0 (a logit gap past
~37 in float64, ~17 in float32), so threshold 1.0 commits exactly one token per forward.

A row stops at EOS (once every position up to the first EOS is filled) or at the budget.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, get_args

import torch
from torch import nn

from dlm.core.checkpoint import CleanStream, training_of
from dlm.core.stats import DecodeStats
from dlm.decoding.base import CachedDecoder, Decoding, mask_token, positive
from dlm.decoding.record import block_size_for
from dlm.decoding.sampling import draw, without_mask
from dlm.decoding.stream import Timer
from dlm.decoding.verify import block_predictions


class Blocks(NamedTuple):
    """How a BlockDiffusionDecoder decodes one model: its settings with the unset ones resolved."""

    mask_id: int
    size: int
    """B, the block length including the anchor."""
    clean: CleanStream
    fold: bool


class BlockDiffusionDecoder(CachedDecoder):
    """Args:
    block_size: B, the block length including the anchor; at least 2. None: the model's training
        record's block_size; an explicit one other than it is warned about (LayoutWarning).
    threshold: the Fast-dLLM confidence threshold tau in (0, 1]: a masked position is filled when its
        confidence exceeds it (1.0: exactly one token per forward).
    sub_block: fill the block's B-1 masks in consecutive sub-blocks of this size, left to right
        (Fast-dLLM v2); None fills the whole block at once.
    clean: how a finished block's K/V are computed, as the model's clean stream attends: "causal"
        (tri-mode, the drafter: the Verify mask, causal within the block, as the model's AR half
        computes it) or "block" (conversion: the Draft mask, bidirectional within the block; decode
        blocks start at the first pending token, so the committed text's blocks are each prompt
        token alone, the prompt being prefilled causally, then the decoded blocks of B tokens).
        None: the model's training record's clean, else "causal".
    fold: take t' from the cross-block prediction (one more masked position of the block) and fold
        the commit into the next forward; None means "when the model has token shift" (fold needs it).
    temperature, top_k, top_p, seed, eos_id, max_len, compile: as for ARDecoder; with temperature > 0 each
        filled token is sampled and its confidence is its sampled probability.
    """

    def __init__(
        self,
        block_size: int | None = None,
        threshold: float = 0.9,
        sub_block: int | None = None,
        clean: CleanStream | None = None,
        fold: bool | None = None,
        temperature: float = 0.0,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int = 0,
        eos_id: int | None = None,
        max_len: int | None = None,
        compile: bool | str | None = None,
    ) -> None:
        self.block_size = None if block_size is None else block_length(block_size)
        if not isinstance(threshold, int | float) or not 0 < threshold <= 1:
            raise ValueError(f"threshold must be in (0, 1], got {threshold!r}")
        self.threshold = float(threshold)
        self.sub_block = None if sub_block is None else positive("sub_block", sub_block)
        if clean is not None and clean not in get_args(CleanStream):
            raise ValueError(f"clean must be 'causal', 'block' or None, got {clean!r}")
        self.clean = clean
        self.fold = fold
        super().__init__(temperature, top_k, top_p, seed, eos_id, max_len, compile)

    def resolve(self, model: nn.Module) -> Blocks:
        who = type(self).__name__
        mask_id = mask_token(model, who)
        fold = self.folds(model)
        size = block_length(block_size_for(who, self.block_size, model))  # a record may hold any int
        clean = self.clean
        if clean is None:
            record = training_of(model)
            clean = record.clean if record is not None and record.clean is not None else "causal"
        return Blocks(mask_id, size, clean, fold)

    def folds(self, model: nn.Module) -> bool:
        shift = model.config.token_shift
        if self.fold and not shift:
            raise ValueError(
                "fold=True takes the next anchor from the cross-block prediction, which needs a "
                "token-shift model (model.config.token_shift is False)"
            )
        return shift if self.fold is None else self.fold

    @torch.no_grad()
    def decode(self, model: nn.Module, prompts: Sequence[Sequence[int]], max_new_tokens: int) -> Decoding:
        stats = DecodeStats()
        with Timer(stats):
            mask_id, B, clean, fold = self.resolve(model)
            shift = model.config.token_shift
            prompts, target, rows, generator = self.start(
                model, prompts, max_new_tokens, 2 * B, stats, mask_id
            )
            slots = B if fold else B - 1  # masked positions of a block (fold: t' is the last)
            blocks = [[t] + [mask_id] * slots for t in rows.pending]
            finished = [False] * len(prompts)  # block full, its commit still due
            while rows.active:
                active, before = rows.active, target.cache.lengths
                layout = target.layout()
                offsets: dict[int, int | None] = {}
                for r in active:
                    c = before[r]
                    if not finished[r]:
                        offsets[r] = layout.add(r, blocks[r][:B], c, causal=False, draft=True)
                        continue
                    layout.add(r, blocks[r][:B], c, causal=clean == "causal")
                    offsets[r] = None
                    if fold:
                        blocks[r] = [rows.pending[r]] + [mask_id] * slots
                        offsets[r] = layout.add(r, blocks[r][:B], c + B, causal=False, sees=B, draft=True)
                commits = [r for r in active if finished[r]]
                logits = target.forward(layout, len(active), commit=bool(commits)).cpu()
                keep = list(before)
                for r in commits:
                    keep[r] += B
                    finished[r] = False
                for r in active:
                    o = offsets[r]
                    if o is None:  # a commit without fold: its last (clean) logit gives the anchor
                        anchor = int(self.sampler.pick(logits[r, B - 1], mask_id, generator))
                        rows.emit(r, [anchor])
                        rows.pending[r] = anchor
                        blocks[r] = [anchor] + [mask_id] * slots
                        continue
                    predictions = block_predictions(logits[r, o : o + B], shift)
                    self.fill(blocks[r], predictions, rows.room(r), mask_id, generator)
                    if self.ready(blocks[r], rows.room(r), mask_id):
                        rows.emit(r, blocks[r][1:])
                        if rows.done[r]:
                            continue
                        if fold:
                            rows.pending[r] = blocks[r][B]
                        finished[r] = True
                target.settle(keep, rows)
        return Decoding(rows.out, stats, {"target": target.cache})

    def fill(self, block: list[int], predictions, room: int, mask_id: int, generator) -> None:
        """One Fast-dLLM step on block (in place): predictions[j - 1] is for block position j; only
        positions that will be emitted (`reach`) are candidates, so no forward is spent on others."""
        masked = [j for j in range(1, self.reach(block, room) + 1) if block[j] == mask_id]
        if self.sub_block is not None:
            first = (masked[0] - 1) // self.sub_block
            masked = [j for j in masked if (j - 1) // self.sub_block == first]
        logits = predictions[[j - 1 for j in masked]]
        if self.sampler.greedy:
            p = without_mask(logits, mask_id).softmax(-1)
            confidence, tokens = p.max(-1)
        else:
            p = self.sampler.probs(logits, mask_id)
            tokens = draw(p, generator)
            confidence = p.gather(-1, tokens[:, None])[:, 0]
        passed = confidence > self.threshold  # strict: threshold 1.0 never passes (see the module doc)
        if not passed.any():
            passed[confidence.argmax()] = True
        for i, j in enumerate(masked):
            if passed[i]:
                block[j] = int(tokens[i])

    def reach(self, block: list[int], room: int) -> int:
        """The last block position that will be emitted: within the budget's room, up to the first EOS."""
        last = min(len(block) - 1, room)
        for j in range(1, last + 1):
            if block[j] == self.eos_id:
                return j
        return last

    def ready(self, block: list[int], room: int, mask_id: int) -> bool:
        """Whether the block can be emitted: every position it will emit (`reach`) is filled."""
        return all(block[j] != mask_id for j in range(1, self.reach(block, room) + 1))


def block_length(block_size: int) -> int:
    positive("block_size", block_size)
    if block_size < 2:
        raise ValueError(f"block_size must be at least 2 (the pending token and one mask), got {block_size}")
    return block_size
