"""What every decoder does around its own loop: check inputs, track each row's output and stop (EOS
or budget), and start a decode (the caches sized and prefilled through stream.py).

The cache convention (see the package README): a row's cache holds its committed text except the
last token t, which is *pending* (its K/V are computed inside the next block, [t, ...]). The prefill
therefore writes prompt[:-1], causally over right-padded prompts, then crops each row.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from dlm.core.cache import KVCache
from dlm.core.compiled import MODES
from dlm.core.stats import DecodeStats
from dlm.decoding.sampling import Sampler
from dlm.decoding.stream import Stream, device_of, new_cache


@dataclass
class Decoding:
    """Everything one decode produced: the tokens, the stats, and the caches (for inspection: the
    tests check that they hold exactly the committed text's K/V)."""

    tokens: list[list[int]]
    stats: DecodeStats
    caches: dict[str, KVCache] = field(default_factory=dict)


class CachedDecoder:
    """What every decoder here shares: the sampling settings, the dlm.core.protocols.Decoder methods
    and generate(); subclasses implement decode(), which also returns the caches (for tests), and
    resolve().

    `stop` (None, or a row's output so far -> whether the row ends there) stops a row like EOS: a
    block or accepted run that crosses it is cut after the token where it returns True."""

    stop: Callable[[list[int]], bool] | None = None
    needs_drafter = False

    def __init__(
        self,
        temperature: float,
        top_k: int | None,
        top_p: float | None,
        seed: int,
        eos_id: int | None,
        max_len: int | None,
        compile: bool | str | None = None,
    ) -> None:
        if not (compile is None or isinstance(compile, bool) or compile in MODES):
            raise ValueError(
                f"compile must be True, False, None (the device's default) or a torch.compile mode "
                f"({', '.join(MODES)}), got {compile!r}"
            )
        self.sampler = Sampler(temperature, top_k, top_p)
        self.seed, self.eos_id, self.max_len, self.compile = seed, eos_id, max_len, compile

    def check(self, model: nn.Module) -> None:
        """Raise ValueError when this decoder cannot run on `model`, warn (LayoutWarning) when its
        draft block is not the one the model was trained on; runs no forward."""
        self.resolve(model)

    def resolve(self, model: nn.Module) -> Any:
        """The settings this decoder decodes `model` with (unset ones taken from its training
        record), after the checks of `check`. decode() starts with it, so a decoder checks a model
        the same way before and during decoding. The base decoder (AR) needs nothing of the model."""
        return None

    def compile_mode(self, model: nn.Module) -> str | None:
        """The torch.compile mode of this decode's forwards, None for eager: `compile` (True is
        "default"), else "default" on CUDA and eager elsewhere."""
        setting = self.compile if self.compile is not None else device_of(model).type == "cuda"
        if setting is False:
            return None
        return "default" if setting is True else setting

    def bind_drafter(self, drafter: nn.Module) -> None:
        raise ValueError(f"{type(self).__name__} drafts with its model; it takes no drafter")

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
        compile = self.compile_mode(model)
        cache = new_cache(model, prompts, max_new_tokens, scratch, self.max_len, compile)
        target = Stream("target", model, cache, stats, filler, compile)
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
