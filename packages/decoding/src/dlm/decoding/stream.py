"""One model with its KV cache during a decode: the cache sized for prompt + budget + scratch, the
prompt prefill, batched forwards over a Layout counted per active row, and the wall-time counter.

With compile on, every forward but the prefill runs fixed-shape and compiled (dlm.core.compiled):
its width padded to a power of two, so a decoder whose forwards vary in width compiles a few graphs;
the cache gets the scratch slots the padded widths need. The padding queries see only the prefix
and themselves, and their K/V land in scratch slots the caller crops away, as a short row's do.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from dlm.attention import Causal
from dlm.core.cache import KVCache
from dlm.core.compiled import compiled_forward
from dlm.core.stats import DecodeStats
from dlm.decoding.layout import Layout

if TYPE_CHECKING:  # base.py imports this module; Progress is only an annotation here
    from dlm.decoding.base import Progress


LENGTH_STEP = 256


def padded_width(width: int) -> int:
    """The width a compiled forward of `width` new tokens runs at: the next power of two."""
    return 1 << (width - 1).bit_length()


def new_cache(
    model: nn.Module,
    prompts: list[list[int]],
    max_new_tokens: int,
    scratch: int,
    max_len: int | None,
    compile: str | None = None,
) -> KVCache:
    """A cache with room for the longest prompt, the budget and one forward's scratch slots. With
    compile: the scratch of its padded width, and a length rounded up to a multiple of LENGTH_STEP
    (within the cap), since a compiled forward's shapes include the cache's length and prompt sets
    of similar lengths should share its graphs."""
    if compile:
        scratch = padded_width(scratch)
    cap = max_len if max_len is not None else model.config.max_seq_len
    longest = max(len(p) for p in prompts)
    if longest > cap:
        raise ValueError(f"a prompt of {longest} tokens is longer than the cache (max_len={cap})")
    need = longest + max_new_tokens + scratch
    if need > cap:
        raise ValueError(
            f"a prompt of {longest} tokens + max_new_tokens={max_new_tokens} + {scratch} scratch slots "
            f"exceed the cache (max_len={cap}); lower max_new_tokens or raise max_len"
        )
    if compile:
        need = min(cap, -(-need // LENGTH_STEP) * LENGTH_STEP)
    return model.new_cache(len(prompts), need)


def device_of(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


class Stream:
    """One model with its cache: prefill, batched forwards over a Layout, counted per active row."""

    def __init__(
        self,
        name: str,
        model: nn.Module,
        cache: KVCache,
        stats: DecodeStats,
        filler: int = 0,
        compile: str | None = None,
    ) -> None:
        self.name, self.model, self.cache, self.stats, self.filler = name, model, cache, stats, filler
        self.device = device_of(model)
        self.compiled = compiled_forward(model, compile) if compile else None

    def prefill(self, prompts: list[list[int]]) -> None:
        """Commit every prompt but its last token (which is pending)."""
        lengths = [len(p) - 1 for p in prompts]
        width = max(lengths)
        if width == 0:
            return
        tokens = torch.tensor(
            [p[:-1] + [self.filler] * (width - n) for p, n in zip(prompts, lengths)], device=self.device
        )
        positions = torch.arange(width, device=self.device).expand(len(prompts), -1)
        self.model.hidden(tokens, positions, Causal(), cache=self.cache)
        self.cache.crop(lengths)
        self.stats.prefills[self.name] = self.stats.prefills.get(self.name, 0) + sum(n > 0 for n in lengths)

    def layout(self) -> Layout:
        return Layout(self.cache.lengths)

    def forward(self, layout: Layout, active: int, commit: bool) -> Tensor:
        """Logits (rows, width, vocab). With commit the cache advances every row by the width; the
        caller then crops each row to what it keeps (`settle`)."""
        start, compiling = time.perf_counter(), 0.0
        if self.compiled is None:
            tokens, positions, mask, draft = layout.build(self.device, self.filler)
            logits = self.model(tokens, positions, mask, cache=self.cache, commit=commit, draft=draft)
        else:
            width = padded_width(layout.width)
            tokens, positions, mask, draft = layout.build(self.device, self.filler, width)
            before = self.compiled.compile_seconds
            logits = self.compiled(tokens, positions, mask, self.cache, commit, draft)
            compiling = self.compiled.compile_seconds - before
            self.stats.compile_seconds += compiling
        if self.device.type == "cuda":  # kernels run async: time them, not their launch
            torch.cuda.synchronize(self.device)
        self.stats.time(self.name, time.perf_counter() - start - compiling)
        self.stats.count(self.name, active)
        return logits

    def settle(self, lengths: list[int], rows: Progress) -> None:
        """Crop every row to what it keeps, never past its emitted text (`Progress.cap`)."""
        self.cache.crop(rows.cap(lengths))


class Timer:
    def __init__(self, stats: DecodeStats) -> None:
        self.stats = stats

    def __enter__(self) -> Timer:
        self.start, self.compiling = time.perf_counter(), self.stats.compile_seconds
        return self

    def __exit__(self, *exc) -> None:
        compiling = self.stats.compile_seconds - self.compiling  # reported apart, not decode time
        self.stats.seconds += time.perf_counter() - self.start - compiling
