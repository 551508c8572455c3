"""Self-speculative decoding with a tri-mode model: diffusion drafts, AR verifies, one shared cache."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from dlm.core.stats import DecodeStats
from dlm.decoding.base import CachedDecoder, Decoding, mask_token, positive
from dlm.decoding.record import k_for
from dlm.decoding.stream import Timer
from dlm.decoding.verify import block_predictions, propose, verify_step


class SelfSpeculativeDecoder(CachedDecoder):
    """Two forwards per step, both over the same cache, which holds the committed text but the
    pending token t:

    1. draft: `[t, MASK x k]` with the Draft mask, not committed -> drafts d_1..d_k (token shift
       decides which logit predicts which mask, see `block_predictions`);
    2. verify: `[t, d_1..d_k]` with the Verify (causal) mask, committed -> AR predictions
       a_0..a_k; accept the longest prefix with d_i = a_(i-1), emit it and the bonus a_n, crop the
       cache to t + the accepted drafts; the bonus is the new pending token.

    Greedy output equals ARDecoder's greedy output; at temperature > 0 drafts are sampled from the
    diffusion distribution q and accepted by lossless speculative sampling, so the output is
    distributed as AR sampling.

    Args:
        k: masks per draft block; None: the model's training record's (its k, else block_size - 1).
            An explicit k other than the record's block_size - 1 is warned about (LayoutWarning).
        cross_block: with token shift, also use the draft's last logit (which predicts the token
            after the block) as a (k+1)-th draft. Needs a token-shift model.
        temperature, top_k, top_p, seed, eos_id, max_len, compile: as for ARDecoder.
    """

    def __init__(
        self,
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
        self.k = None if k is None else positive("k", k)
        self.cross_block = cross_block
        super().__init__(temperature, top_k, top_p, seed, eos_id, max_len, compile)

    def resolve(self, model: nn.Module) -> tuple[int, int]:
        """(the model's mask id, k)."""
        who = type(self).__name__
        mask_id = mask_token(model, who)
        if self.cross_block and not model.config.token_shift:
            raise ValueError("cross_block=True needs a token-shift model (model.config.token_shift is False)")
        return mask_id, k_for(who, self.k, model)

    @torch.no_grad()
    def decode(self, model: nn.Module, prompts: Sequence[Sequence[int]], max_new_tokens: int) -> Decoding:
        stats = DecodeStats()
        with Timer(stats):
            mask_id, k = self.resolve(model)
            m, shift = k + int(self.cross_block), model.config.token_shift
            _, target, rows, generator = self.start(model, prompts, max_new_tokens, k + 2, stats, mask_id)
            while rows.active:
                active, before = rows.active, target.cache.lengths
                layout = target.layout()
                for r in active:
                    layout.add(r, [rows.pending[r]] + [mask_id] * k, before[r], causal=False, draft=True)
                logits = target.forward(layout, len(active), commit=False)
                predictions = block_predictions(logits[active].cpu(), shift)[:, :m]
                drafts = propose(self.sampler, predictions, mask_id, generator)
                verify_step(self.sampler, target, rows, drafts, before, mask_id, generator, stats)
        return Decoding(rows.out, stats, {"target": target.cache})
