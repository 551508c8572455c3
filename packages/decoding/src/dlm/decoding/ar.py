"""Autoregressive decoding with the KV cache: one forward per token, greedy or sampled."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from dlm.core.stats import DecodeStats
from dlm.decoding.base import CachedDecoder, Decoding
from dlm.decoding.stream import Timer


class ARDecoder(CachedDecoder):
    """Each step feeds every row's pending token t (Verify mask of width 1, committed) and picks the
    next token from its logit: greedy (temperature 0) or sampled with temperature, top-k, top-p.

    Args:
        temperature, top_k, top_p: see `Sampler`.
        seed: seeds the generator that every sampled token draws from (one per generate call).
        eos_id: a row stops after emitting it (None: only the budget stops rows).
        max_len: cache capacity (default model.config.max_seq_len).
        compile: run every forward but the prefill fixed-shape and compiled (dlm.core.compiled; the
            same tokens, compile time reported apart): True, or a torch.compile mode from
            dlm.core.compiled.MODES ("reduce-overhead" adds CUDA graphs on GPUs); None: on for CUDA,
            off elsewhere (on this project's CPU a graph takes 30-90 s to compile, which a short
            decode never earns back; see the decoding README).
    """

    def __init__(
        self,
        temperature: float = 0.0,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int = 0,
        eos_id: int | None = None,
        max_len: int | None = None,
        compile: bool | str | None = None,
    ) -> None:
        super().__init__(temperature, top_k, top_p, seed, eos_id, max_len, compile)

    @torch.no_grad()
    def decode(self, model: nn.Module, prompts: Sequence[Sequence[int]], max_new_tokens: int) -> Decoding:
        stats = DecodeStats()
        with Timer(stats):
            mask_id = model.config.mask_token_id
            _, target, rows, generator = self.start(model, prompts, max_new_tokens, 1, stats)
            while rows.active:
                active = rows.active
                before = target.cache.lengths
                layout = target.layout()
                for r in active:
                    layout.add(r, [rows.pending[r]], before[r], causal=True)
                logits = target.forward(layout, len(active), commit=True)
                tokens = self.sampler.pick(logits[active, 0].cpu(), mask_id, generator).tolist()
                keep = list(before)
                for r, token in zip(active, tokens, strict=True):
                    rows.emit(r, [token])
                    rows.pending[r] = token
                    keep[r] += 1
                target.settle(keep, rows)
        return Decoding(rows.out, stats, {"target": target.cache})
