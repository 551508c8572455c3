"""What every decoder does around its own loop: check inputs, size and prefill the caches, track
each row's output and stop (EOS or budget), count forwards.

The cache convention (see the package README): a row's cache holds its committed text except the
last token t, which is *pending* (its K/V are computed inside the next block, [t, ...]). The prefill
therefore writes prompt[:-1], causally over right-padded prompts, then crops each row.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from dlm.attention import Causal
from dlm.core.cache import KVCache
from dlm.core.protocols import DecodeStats
from dlm.decoding.layout import Layout
from dlm.decoding.sampling import Sampler


@dataclass
class Decoding:
    """Everything one decode produced: the tokens, the stats, and the caches (for inspection: the
    tests check that they hold exactly the committed text's K/V)."""

    tokens: list[list[int]]
    stats: DecodeStats
    caches: dict[str, KVCache] = field(default_factory=dict)


class CachedDecoder:
    """What every decoder here shares: the sampling settings and generate(); subclasses implement
    decode(), which also returns the caches (for tests).

    `stop` (None, or a row's output so far -> whether the row ends there) stops a row like EOS: a
    block or accepted run that crosses it is cut after the token where it returns True."""

    stop: Callable[[list[int]], bool] | None = None

    def __init__(
        self,
        temperature: float,
        top_k: int | None,
        top_p: float | None,
        seed: int,
        eos_id: int | None,
        max_len: int | None,
    ) -> None:
        self.sampler = Sampler(temperature, top_k, top_p)
        self.seed, self.eos_id, self.max_len = seed, eos_id, max_len

    def generate(
        self, model: nn.Module, prompts: Sequence[Sequence[int]], max_new_tokens: int
    ) -> tuple[list[list[int]], DecodeStats]:
        result = self.decode(model, prompts, max_new_tokens)
        return result.tokens, result.stats

    def decode(self, model: nn.Module, prompts: Sequence[Sequence[int]], max_new_tokens: int) -> Decoding:
        raise NotImplementedError

    def start(
        self,
        model: nn.Module,
        prompts: Sequence[Sequence[int]],
        max_new_tokens: int,
        scratch: int,
        stats: DecodeStats,
        filler: int = 0,
    ) -> tuple[list[list[int]], Stream, Progress, torch.Generator]:
        """The checked prompts, the model's stream with them prefilled (a cache with `scratch`
        slots beyond prompt + budget), each row's progress, and the generator samples draw from."""
        prompts = check_prompts(prompts, max_new_tokens, model.config.vocab_size)
        cache = new_cache(model, prompts, max_new_tokens, scratch, self.max_len)
        target = Stream("target", model, cache, stats, filler=filler)
        rows = Progress(prompts, max_new_tokens, self.eos_id, stats, self.stop)
        target.prefill(prompts)
        return prompts, target, rows, torch.Generator().manual_seed(self.seed)


def positive(name: str, value: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def mask_token(model: nn.Module, who: str) -> int:
    """The model's [MASK] id; a diffusion decoder cannot run without one."""
    mask_id = model.config.mask_token_id
    if mask_id is None:
        raise ValueError(
            f"{who} needs a model with a mask token, but model.config.mask_token_id is None "
            "(add one with model.add_mask_token(id) and train the model for diffusion)"
        )
    return mask_id


def check_prompts(prompts: Sequence[Sequence[int]], max_new_tokens: int, vocab_size: int) -> list[list[int]]:
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be a non-negative integer, got {max_new_tokens!r}")
    if isinstance(prompts, str | bytes) or not len(prompts):
        raise ValueError("prompts must be a non-empty batch of token lists")
    out = []
    for i, prompt in enumerate(prompts):
        ids = [int(t) for t in prompt]
        if not ids:
            raise ValueError(f"prompt {i} is empty; every prompt needs at least one token")
        bad = [t for t in ids if not 0 <= t < vocab_size]
        if bad:
            raise ValueError(
                f"prompt {i} holds token id {bad[0]} outside the model's vocabulary [0, {vocab_size})"
            )
        out.append(ids)
    return out


def new_cache(
    model: nn.Module, prompts: list[list[int]], max_new_tokens: int, scratch: int, max_len: int | None
) -> KVCache:
    """A cache with room for the longest prompt, the budget and one forward's scratch slots."""
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
    return model.new_cache(len(prompts), need)


def device_of(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


class Progress:
    """Each row's emitted tokens, its pending token, and whether it has stopped."""

    def __init__(
        self,
        prompts: list[list[int]],
        budget: int,
        eos_id: int | None,
        stats: DecodeStats,
        stop: Callable[[list[int]], bool] | None = None,
    ) -> None:
        self.prompt_lengths = [len(p) for p in prompts]
        self.out: list[list[int]] = [[] for _ in prompts]
        self.pending = [p[-1] for p in prompts]
        self.done = [budget == 0] * len(prompts)
        self.budget, self.eos_id, self.stats, self.stop = budget, eos_id, stats, stop
        stats.rows += len(prompts)

    @property
    def active(self) -> list[int]:
        return [r for r, d in enumerate(self.done) if not d]

    def room(self, row: int) -> int:
        return self.budget - len(self.out[row])

    def cap(self, lengths: list[int]) -> list[int]:
        """Cache lengths limited to the text emitted so far but the last token: a verify step cut
        short by EOS or the budget must not leave tokens past the output in the cache (a finished
        row's cache would then outgrow the slots reserved for it)."""
        return [
            min(n, p + len(o) - 1) for n, p, o in zip(lengths, self.prompt_lengths, self.out, strict=True)
        ]

    def emit(self, row: int, tokens: Sequence[int]) -> int:
        """Append tokens up to the first EOS (kept), the budget or the token where `stop` says the
        row ends (kept); return how many were kept."""
        kept = 0
        for token in tokens:
            if self.done[row]:
                break
            self.out[row].append(int(token))
            kept += 1
            self.done[row] = (
                int(token) == self.eos_id
                or len(self.out[row]) >= self.budget
                or (self.stop is not None and self.stop(self.out[row]))
            )
        self.stats.tokens += kept
        return kept


class Stream:
    """One model with its cache: prefill, batched forwards over a Layout, counted per active row."""

    def __init__(
        self, name: str, model: nn.Module, cache: KVCache, stats: DecodeStats, filler: int = 0
    ) -> None:
        self.name, self.model, self.cache, self.stats, self.filler = name, model, cache, stats, filler
        self.device = device_of(model)

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
        tokens, positions, mask = layout.build(self.device, self.filler)
        logits = self.model(tokens, positions, mask, cache=self.cache, commit=commit)
        self.stats.count(self.name, active)
        return logits

    def settle(self, lengths: list[int], rows: Progress) -> None:
        """Crop every row to what it keeps, never past its emitted text (`Progress.cap`)."""
        self.cache.crop(rows.cap(lengths))


class Timer:
    def __init__(self, stats: DecodeStats) -> None:
        self.stats = stats

    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.stats.seconds += time.perf_counter() - self.start
