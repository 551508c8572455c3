"""Interfaces shared across packages, so training can call decoders without importing dlm.decoding."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from torch import nn


@runtime_checkable
class Tokenizer(Protocol):
    vocab_size: int
    eos_id: int
    pad_id: int
    mask_id: int | None

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: Sequence[int]) -> str: ...

    def to_spec(self) -> dict[str, Any]: ...


@dataclass
class DecodeStats:
    """What one generate() call did.

    Forwards are counted per model ("target", "drafter") and per row: a batched forward counts once
    for every row still generating, so TPF means the same at any batch size. The prompt prefill is
    counted apart (`prefills`), so TPF measures decoding alone (AR greedy has TPF exactly 1).
    """

    forwards: dict[str, int] = field(default_factory=dict)
    """Decode forwards per model, counted once per row still generating (prefill excluded)."""
    calls: dict[str, int] = field(default_factory=dict)
    """Batched forward calls per model (prefill excluded): what the hardware actually ran."""
    prefills: dict[str, int] = field(default_factory=dict)
    """Prompt prefill forwards per model, counted per row."""
    tokens: int = 0
    """New tokens emitted, summed over rows (an EOS that stops a row counts; nothing after it does)."""
    rows: int = 0
    """Prompts decoded."""
    accepted: list[int] = field(default_factory=list)
    """Tokens emitted per verify step (speculative decoders; accepted drafts + the bonus token, after
    truncation at EOS or the budget), one entry per row and step. Empty for AR and block diffusion."""
    position_trials: list[int] = field(default_factory=list)
    """How often draft position k (0-based) was checked by the verifier (positions after the first
    rejection are not checked)."""
    position_accepts: list[int] = field(default_factory=list)
    """How often draft position k was accepted."""
    seconds: float = 0.0
    """Wall time of the generate() call, prefill included."""

    def count(self, model: str, rows: int, calls: int = 1) -> None:
        """Record one batched forward of `model` over `rows` rows still generating."""
        self.forwards[model] = self.forwards.get(model, 0) + rows
        self.calls[model] = self.calls.get(model, 0) + calls

    def record_verify(self, emitted: int, drafted: int, accepted: int) -> None:
        """One verify step of one row: `drafted` drafts, the first `accepted` kept, `emitted` tokens
        out. Draft positions up to the first rejection count as checked."""
        self.accepted.append(emitted)
        grow = max(0, drafted - len(self.position_trials))
        self.position_trials.extend([0] * grow)
        self.position_accepts.extend([0] * grow)
        for k in range(min(accepted + 1, drafted)):
            self.position_trials[k] += 1
            self.position_accepts[k] += k < accepted

    @property
    def tpf(self) -> float:
        """Tokens emitted per target-model forward."""
        target = self.forwards.get("target", 0)
        return self.tokens / target if target else 0.0

    @property
    def drafter_forwards_per_token(self) -> float:
        """Drafter forwards per emitted token (speculative decoding with an external drafter)."""
        return self.forwards.get("drafter", 0) / self.tokens if self.tokens else 0.0

    @property
    def tau(self) -> float:
        """Mean tokens emitted per verify step."""
        return sum(self.accepted) / len(self.accepted) if self.accepted else 0.0

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0

    @property
    def acceptance_by_position(self) -> list[float]:
        return [a / t if t else 0.0 for a, t in zip(self.position_accepts, self.position_trials, strict=True)]

    def merged(self, other: DecodeStats) -> DecodeStats:
        """The stats of both calls together (e.g. a prompt set decoded in several batches)."""

        def add(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
            return {k: a.get(k, 0) + b.get(k, 0) for k in sorted(set(a) | set(b))}

        def add_lists(a: list[int], b: list[int]) -> list[int]:
            n = max(len(a), len(b))
            return [(a[i] if i < len(a) else 0) + (b[i] if i < len(b) else 0) for i in range(n)]

        return DecodeStats(
            forwards=add(self.forwards, other.forwards),
            calls=add(self.calls, other.calls),
            prefills=add(self.prefills, other.prefills),
            tokens=self.tokens + other.tokens,
            rows=self.rows + other.rows,
            accepted=self.accepted + other.accepted,
            position_trials=add_lists(self.position_trials, other.position_trials),
            position_accepts=add_lists(self.position_accepts, other.position_accepts),
            seconds=self.seconds + other.seconds,
        )

    def summary(self) -> dict[str, Any]:
        """The derived metrics as plain numbers (for tables and JSON)."""
        return {
            "rows": self.rows,
            "tokens": self.tokens,
            "forwards": dict(self.forwards),
            "calls": dict(self.calls),
            "tpf": self.tpf,
            "tau": self.tau,
            "tokens_per_second": self.tokens_per_second,
            "seconds": self.seconds,
            "acceptance_by_position": self.acceptance_by_position,
        }


def agreement(outputs: Sequence[Sequence[int]], reference: Sequence[Sequence[int]]) -> float:
    """Fraction of reference tokens that the outputs reproduce at the same position (missing ones
    count as different); 1.0 when every row equals its reference."""
    if len(outputs) != len(reference):
        raise ValueError(
            f"agreement needs as many outputs as references, got {len(outputs)} and {len(reference)}"
        )
    total = sum(len(r) for r in reference)
    same = sum(sum(a == b for a, b in zip(out, ref, strict=False)) for out, ref in zip(outputs, reference))
    return same / total if total else 1.0


def prefix_agreement(outputs: Sequence[Sequence[int]], reference: Sequence[Sequence[int]]) -> float:
    """Fraction of reference tokens before each row's first difference (a stricter agreement)."""
    if len(outputs) != len(reference):
        raise ValueError(
            f"agreement needs as many outputs as references, got {len(outputs)} and {len(reference)}"
        )
    total = sum(len(r) for r in reference)
    same = 0
    for out, ref in zip(outputs, reference):
        n = 0
        while n < min(len(out), len(ref)) and out[n] == ref[n]:
            n += 1
        same += n
    return same / total if total else 1.0


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
    ) -> dict[str, float]:
        """Decode `prompts` with every decoder; "<decoder>/<metric>" numbers (with `reference`, an
        AR model, also the NLL of each output under it). With `directory`, write the table, the
        JSON report and the plot there (call it on one process)."""
        ...


__all__ = [
    "DecodeStats",
    "Decoder",
    "Evaluation",
    "LayoutMismatch",
    "LayoutWarning",
    "Tokenizer",
    "agreement",
    "prefix_agreement",
]
