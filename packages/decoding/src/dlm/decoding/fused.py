"""Fused self-speculation: one forward verifies the current drafts and drafts the next block.

Our formulation (following the decoders section of docs/DESIGN.md and the anchor convention). With
pending token t at position c and drafts d_1..d_m, a fused forward holds, per row:

- the verify segment `[t, d_1..d_m]` at c..c+m (causal, committed: cropped after acceptance);
- candidate draft blocks `[x_j, MASK x k]` at c+j..c+j+k, x_0 = t, x_j = d_j, each seeing the
  prefix, the verify tokens before it (t, d_1..d_(j-1)) and itself bidirectionally. That is exactly
  the draft block the anchor convention builds for "d_1..d_(j-1) committed, x_j pending", so
  candidate j is right when j drafts are accepted. Plain fused drafts only j = m (full acceptance);
  the quadratic form drafts every j = 0..m, so some candidate always fits.

The bonus token a_j is only known after the forward, so a candidate's first prediction (for the
bonus position) is dropped and its later ones are the next drafts: k of them with token shift
(the last comes from the cross-block logit), k - 1 without. When no candidate fits (plain fused
after a rejection) the row's next forward is a plain draft forward `[a_n, MASK x k]`, whose
predictions all become drafts (k + 1 with shift, k without). Every forward counts once per active
row, so TPF is honest: a plain-fused step costs one forward after full acceptance and two after a
rejection; a quadratic step always costs one.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from dlm.core.stats import DecodeStats
from dlm.decoding.base import CachedDecoder, Decoding, mask_token, positive
from dlm.decoding.record import k_for
from dlm.decoding.stream import Timer
from dlm.decoding.verify import Drafts, block_predictions, propose, verify


class FusedSelfSpeculativeDecoder(CachedDecoder):
    """Self-speculation (see SelfSpeculativeDecoder) with the verify of one block and the draft of the
    next in one forward; `quadratic=True` drafts a candidate next block for every acceptance length.

    Args:
        k: masks per draft block; None: the model's training record's (its k, else block_size - 1).
            An explicit k other than the record's block_size - 1 is warned about (LayoutWarning).
        quadratic: draft k + 1 candidate blocks per forward instead of one.
        temperature, top_k, top_p, seed, eos_id, max_len, compile: as for ARDecoder.
    """

    def __init__(
        self,
        k: int | None = None,
        quadratic: bool = False,
        temperature: float = 0.0,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int = 0,
        eos_id: int | None = None,
        max_len: int | None = None,
        compile: bool | str | None = None,
    ) -> None:
        self.k = None if k is None else positive("k", k)
        self.quadratic = quadratic
        super().__init__(temperature, top_k, top_p, seed, eos_id, max_len, compile)

    def resolve(self, model: nn.Module) -> tuple[int, int]:
        """(the model's mask id, k)."""
        who = type(self).__name__
        mask_id = mask_token(model, who)
        return mask_id, k_for(who, self.k, model)

    def scratch(self, k: int) -> int:
        """The widest row: up to k + 2 verify tokens and one (quadratic: up to k + 2) candidate
        blocks of k + 1 tokens."""
        candidates = k + 2 if self.quadratic else 1
        return k + 2 + candidates * (k + 1)

    @torch.no_grad()
    def decode(self, model: nn.Module, prompts: Sequence[Sequence[int]], max_new_tokens: int) -> Decoding:
        stats = DecodeStats()
        with Timer(stats):
            mask_id, k = self.resolve(model)
            shift = model.config.token_shift
            prompts, target, rows, generator = self.start(
                model, prompts, max_new_tokens, self.scratch(k), stats, mask_id
            )
            drafts: list[Drafts | None] = [None] * len(prompts)
            while rows.active:
                active, before = rows.active, target.cache.lengths
                layout = target.layout()
                offsets: dict[int, dict[int, int]] = {}
                for r in active:
                    t, c = rows.pending[r], before[r]
                    if drafts[r] is None:
                        layout.add(r, [t] + [mask_id] * k, c, causal=False, draft=True)
                        continue
                    x = [t] + drafts[r].tokens
                    layout.add(r, x, c, causal=True)
                    js = range(len(x)) if self.quadratic else [len(x) - 1]
                    offsets[r] = {
                        j: layout.add(r, [x[j]] + [mask_id] * k, c + j, False, sees=j, draft=True) for j in js
                    }
                logits = target.forward(layout, len(active), commit=bool(offsets)).cpu()
                keep = list(before)
                for r in active:
                    if r not in offsets:
                        predictions = block_predictions(logits[r, : k + 1], shift)
                        drafts[r] = propose(self.sampler, predictions[None], mask_id, generator)[0]
                        continue
                    d = drafts[r]
                    m = len(d.tokens)
                    n, token = verify(self.sampler, logits[r, : m + 1], d, mask_id, generator)
                    kept = rows.emit(r, d.tokens[:n] + [token])
                    stats.record_verify(kept, m, n)
                    keep[r] += 1 + n
                    rows.pending[r] = token
                    drafts[r] = None
                    if n in offsets[r] and not rows.done[r]:
                        o = offsets[r][n]
                        predictions = block_predictions(logits[r, o : o + k + 1], shift)[1:]
                        drafts[r] = propose(self.sampler, predictions[None], mask_id, generator)[0]
                target.settle(keep, rows)
        return Decoding(rows.out, stats, {"target": target.cache})
