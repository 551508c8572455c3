"""Interfaces shared across packages, so training can call decoders without importing dlm.decoding."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from torch import nn

from dlm.core.stats import DecodeStats, EvaluationResult

Stop = Callable[[list[int]], bool]
"""A row's output so far -> whether the row ends there (like EOS: the token is kept, none after it)."""


@runtime_checkable
class Tokenizer(Protocol):
    vocab_size: int
    eos_id: int
    pad_id: int
    mask_id: int | None

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: Sequence[int]) -> str: ...

    def to_spec(self) -> dict[str, Any]: ...


class LayoutMismatch(ValueError):
    """A decoder set up for a draft layout its model was not trained for (more drafts than a
    trained block holds, a logit no loss trained). `predicate` reads after the decoder's name."""

    def __init__(self, decoder: str, predicate: str) -> None:
        super().__init__(f"{decoder} {predicate}")
        self.predicate = predicate


class LayoutWarning(UserWarning):
    """A decoder drafts a block other than the one its model was trained on; the message is a
    predicate that reads after the decoder's name."""


@runtime_checkable
class Decoder(Protocol):
    """Generates continuations of a batch of prompts (token lists of different lengths).

    A decoder that drafts with a separate model (`needs_drafter`) is given it by bind_drafter
    before check or generate; the model passed to generate is then the target. Block sizes and
    draft lengths left unset (None) come from the model's TrainingRecord (dlm.core.checkpoint).
    """

    needs_drafter: bool
    """Whether generate() drafts with an external model bound by bind_drafter()."""
    seed: int
    """The seed of the generator a sampling decoder draws from, per generate() call."""
    stop: Stop | None
    """Ends a row early (e.g. at a stop string); None: EOS and the budget only."""

    def check(self, model: nn.Module) -> None:
        """Raise ValueError when this decoder cannot run on `model` (no mask token, an option the
        model was not trained for, a block size it cannot resolve); warn when its draft block is
        not the one the model was trained on. Runs no forward."""
        ...

    def bind_drafter(self, drafter: nn.Module) -> None:
        """Draft with `drafter` from now on (ValueError for a decoder that drafts with its model)."""
        ...

    def generate(
        self, model: nn.Module, prompts: Sequence[Sequence[int]], max_new_tokens: int
    ) -> tuple[list[list[int]], DecodeStats]: ...


@runtime_checkable
class Evaluation(Protocol):
    """Test-time decoding evaluation of a model: its decoders on held-out prompts, the stats, a
    table, a JSON report and the acceptance plot. A training module collects `prompts` prompts of
    `prompt_tokens` tokens from its test data, checks the decoders when it is built and runs them
    at the end of test; dlm.decoding.Evaluation implements it, so training never imports decoding."""

    decoders: Mapping[str, Decoder]
    prompts: int
    """Held-out prompts per process."""
    prompt_tokens: int
    """Tokens per prompt."""

    def check(self, model: nn.Module, drafter: nn.Module | None = None) -> None:
        """Bind `drafter` to the decoders that need one, then check every decoder against `model`
        (ValueError naming the decoder), before any training."""
        ...

    def run(
        self,
        model: nn.Module,
        prompts: list[list[int]],
        drafter: nn.Module | None = None,
        reference: nn.Module | None = None,
        directory: str | Path | None = None,
        progress: bool = False,
        stop: Stop | None = None,
        seeds: Sequence[int] | None = None,
        score: Callable[[Mapping[str, list[list[int]]]], Mapping[str, float]] | None = None,
    ) -> EvaluationResult:
        """Decode `prompts` with every decoder, batch by batch, the decoders interleaved; the
        "<decoder>/<metric>" numbers (with `reference`, an AR model, also the NLL of each output
        under it), the outputs, the stats and the JSON-able report. `stop` ends rows early; with
        `seeds` the prompts are decoded once per seed (the decoders' seed set to it, outputs seed
        after seed); `score` (the outputs by decoder -> more "<decoder>/<metric>" numbers, e.g. a
        task's pass@1) adds to the metrics before they are reported. With `directory`, write the
        table, the JSON report and the plot there (call it on one process)."""
        ...


__all__ = ["Decoder", "Evaluation", "LayoutMismatch", "LayoutWarning", "Stop", "Tokenizer"]
