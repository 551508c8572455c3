"""What decoding measured: the stats of generate() calls, the agreement of outputs with a reference,
and the result of an evaluation (dlm.core.protocols.Evaluation.run)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


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
    """Wall time of the generate() call, prefill included, compiling excluded."""
    compile_seconds: float = 0.0
    """Wall time spent compiling (the first forward of each new shape with compile on)."""
    forward_seconds: dict[str, float] = field(default_factory=dict)
    """Wall time of the decode forwards per model (prefill and compiling excluded): with an external
    drafter, its share of `seconds` is what drafting costs."""

    def count(self, model: str, rows: int, calls: int = 1) -> None:
        """Record one batched forward of `model` over `rows` rows still generating."""
        self.forwards[model] = self.forwards.get(model, 0) + rows
        self.calls[model] = self.calls.get(model, 0) + calls

    def time(self, model: str, seconds: float) -> None:
        """Record the wall time of one decode forward of `model`."""
        self.forward_seconds[model] = self.forward_seconds.get(model, 0.0) + seconds

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
    def drafter_time_share(self) -> float:
        """The drafter's decode forwards' share of the wall time (external drafter)."""
        return self.forward_seconds.get("drafter", 0.0) / self.seconds if self.seconds else 0.0

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

        def add(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
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
            compile_seconds=self.compile_seconds + other.compile_seconds,
            forward_seconds=add(self.forward_seconds, other.forward_seconds),
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
            "compile_seconds": self.compile_seconds,
            "forward_seconds": dict(self.forward_seconds),
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


@dataclass
class EvaluationResult:
    """What an evaluation's run gave: the numbers, each decoder's outputs and stats, the report."""

    metrics: dict[str, float]
    """"<decoder>/<metric>" numbers (what a training module logs as "test/<decoder>/<metric>")."""
    outputs: dict[str, list[list[int]]]
    """Each decoder's generated tokens, one row per prompt (and per seed, seed after seed)."""
    stats: dict[str, DecodeStats]
    """Each decoder's stats, merged over its batches."""
    report: dict[str, Any] = field(default_factory=dict)
    """The JSON-able report: title, settings, baseline and the metrics by decoder (the schema every
    entry point writes; see dlm.decoding.evaluation)."""


__all__ = ["DecodeStats", "EvaluationResult", "agreement", "prefix_agreement"]
