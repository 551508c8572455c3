"""Speculative decoding with an external diffusion drafter and an AR target, each with its own cache.

Both caches hold the committed text but the pending token t. A step:

1. drafter forward, per row: `[t_prev, accepted drafts of the last step]` (causal, committed: the
   text the target accepted last step, which the drafter has not cached yet) followed by the draft
   block `[t, MASK x k]` (bidirectional, seeing the segment before it, not committed) -> d_1..d_k.
   Folding the drafter's catch-up into its draft forward keeps it at one forward per step.
2. target forward `[t, d_1..d_k]` (Verify, committed) -> accept (greedy or lossless sampling), emit,
   crop the target's cache; the drafter's cache is cropped to its committed text in step 1.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
from torch import nn

from dlm.core.checkpoint import TrainingRecord, training_of
from dlm.core.protocols import LayoutMismatch, LayoutWarning
from dlm.core.stats import DecodeStats
from dlm.decoding.base import CachedDecoder, Decoding, mask_token, positive
from dlm.decoding.record import trained_k
from dlm.decoding.stream import Stream, Timer, new_cache
from dlm.decoding.verify import block_predictions, propose, verify_step

# The training module (as a checkpoint's TrainingRecord names it) that scores only the k drafts
# inside each block, never the logit after it.
UNTRAINED_CROSS_BLOCK = "DrafterModule"


class DrafterSpeculativeDecoder(CachedDecoder):
    """Args:
    drafter: a diffusion model with a mask token and the target's vocabulary; its clean stream
        is causal (its committed text is cached as a causal forward computes it). May be bound
        after construction (None until then) with bind_drafter: a YAML config cannot hold a model,
        so a training module or an evaluation binds the drafter before decoding.
    k: masks per draft block; None: the drafter's training record's (its k, else block_size - 1).
        Refused when the drafter's training blocks hold fewer drafts (LayoutMismatch); warned
        about (LayoutWarning) when its block is not training's [anchor, MASK x (B - 1)] or it
        drafts more than the training loss scored.
    cross_block: with a token-shift drafter, use its cross-block prediction as a (k+1)-th draft.
        Refused for a drafter whose training record names dlm.training's DrafterModule, whose
        loss never reads that logit.
    temperature, top_k, top_p, seed, eos_id, max_len, compile: as for ARDecoder (the drafter samples its
        drafts with the same settings; the target accepts them losslessly).

    generate(model=target, ...). Stats count "target" and "drafter" forwards; TPF is per target forward.
    """

    needs_drafter = True

    def __init__(
        self,
        drafter: nn.Module | None = None,
        k: int | None = None,
        cross_block: bool = False,
        temperature: float = 0.0,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int = 0,
        eos_id: int | None = None,
        max_len: int | None = None,
        compile: bool | str | None = None,
    ) -> None:
        self.drafter = drafter
        self.k = None if k is None else positive("k", k)
        self.cross_block = cross_block
        super().__init__(temperature, top_k, top_p, seed, eos_id, max_len, compile)

    def bind_drafter(self, drafter: nn.Module) -> None:
        self.drafter = drafter

    def resolve(self, model: nn.Module) -> tuple[int, int]:
        """(the drafter's mask id, k), after checking the drafter and the target `model` fit
        together and the drafter was trained for the block it drafts."""
        if self.drafter is None:
            raise ValueError("DrafterSpeculativeDecoder has no drafter: pass drafter= or set decoder.drafter")
        mask_id = mask_token(self.drafter, "DrafterSpeculativeDecoder's drafter")
        tv, dv = model.config.vocab_size, self.drafter.config.vocab_size
        if tv != dv:
            raise ValueError(
                f"the drafter's vocabulary ({dv} tokens) differs from the target's ({tv} tokens)"
            )
        if self.cross_block and not self.drafter.config.token_shift:
            raise ValueError(
                "cross_block=True needs a token-shift drafter (drafter.config.token_shift is False)"
            )
        k = (
            self.k
            if self.k is not None
            else trained_k("DrafterSpeculativeDecoder", self.drafter, "the drafter")
        )
        self.check_layout(k, training_of(self.drafter))
        return mask_id, k

    def check_layout(self, k: int, trained: TrainingRecord | None) -> None:
        """Refuse drafts the drafter's training never produced; warn about a block unlike its
        training blocks. Nothing to compare without a record."""
        if trained is None:
            return
        B, K = trained.block_size, trained.k
        if B is not None and k > B - 1:
            raise LayoutMismatch(
                "DrafterSpeculativeDecoder",
                f"drafts k={k} tokens, more than the drafter's block size {B} holds after the anchor ({B - 1})",
            )
        if self.cross_block and trained.module == UNTRAINED_CROSS_BLOCK:
            raise LayoutMismatch(
                "DrafterSpeculativeDecoder",
                f"sets cross_block=True, but {UNTRAINED_CROSS_BLOCK} never trains the drafter's logit "
                "after its draft block; use cross_block=False",
            )
        if B is not None and (k != B - 1 or (K is not None and k > K)):
            unscored = f"; the loss scores only the first {K} drafts" if K is not None and k > K else ""
            # stacklevel: past this method and resolve, to check or decode, to their caller.
            warnings.warn(
                LayoutWarning(
                    f"drafts [t, MASK x {k}] but training shows the drafter [anchor, MASK x {B - 1}] "
                    f"blocks (block_size {B}){unscored}"
                ),
                stacklevel=4,
            )

    @torch.no_grad()
    def decode(self, model: nn.Module, prompts: Sequence[Sequence[int]], max_new_tokens: int) -> Decoding:
        stats = DecodeStats()
        with Timer(stats):
            mask_id, k = self.resolve(model)
            m, shift = k + int(self.cross_block), self.drafter.config.token_shift
            prompts, target, rows, generator = self.start(
                model, prompts, max_new_tokens, m + 2, stats, mask_id
            )
            compile = self.compile_mode(model)
            drafter_cache = new_cache(self.drafter, prompts, max_new_tokens, m + k + 3, self.max_len, compile)
            drafter = Stream("drafter", self.drafter, drafter_cache, stats, mask_id, compile)
            drafter.prefill(prompts)
            behind: list[list[int]] = [[] for _ in prompts]  # committed by the target, not yet by the drafter
            while rows.active:
                active, dbefore = rows.active, drafter.cache.lengths
                layout = drafter.layout()
                offsets = {}
                for r in active:
                    if behind[r]:
                        layout.add(r, behind[r], dbefore[r], causal=True)
                    block = [rows.pending[r]] + [mask_id] * k
                    offsets[r] = layout.add(
                        r, block, dbefore[r] + len(behind[r]), False, sees=len(behind[r]), draft=True
                    )
                commit = any(behind[r] for r in active)
                logits = drafter.forward(layout, len(active), commit=commit).cpu()
                caught_up = list(dbefore)
                for r in active:
                    caught_up[r] += len(behind[r])
                drafter.settle(caught_up, rows)
                predictions = torch.stack([logits[r, offsets[r] : offsets[r] + k + 1] for r in active])
                drafts = propose(
                    self.sampler, block_predictions(predictions, shift)[:, :m], mask_id, generator
                )

                pending = list(rows.pending)
                accepted = verify_step(
                    self.sampler, target, rows, drafts, target.cache.lengths, mask_id, generator, stats
                )
                for r, d, n in zip(active, drafts, accepted, strict=True):
                    behind[r] = [pending[r]] + d.tokens[:n]
        return Decoding(rows.out, stats, {"target": target.cache, "drafter": drafter.cache})
