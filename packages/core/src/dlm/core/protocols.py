"""Interfaces shared across packages, so training can call decoders without importing dlm.decoding."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
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
    for every row still generating, so TPF means the same at any batch size.
    """

    forwards: dict[str, int] = field(default_factory=dict)
    tokens: int = 0
    """New tokens emitted, summed over rows."""
    accepted: list[int] = field(default_factory=list)
    """Tokens emitted per verify step (speculative decoders), one entry per row and step."""
    position_trials: list[int] = field(default_factory=list)
    """How often draft position k (0-based) was checked by the verifier."""
    position_accepts: list[int] = field(default_factory=list)
    """How often draft position k was accepted."""
    seconds: float = 0.0

    @property
    def tpf(self) -> float:
        """Tokens emitted per target-model forward."""
        target = self.forwards.get("target", 0)
        return self.tokens / target if target else 0.0

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


@runtime_checkable
class Decoder(Protocol):
    """Generates continuations of a batch of prompts (token lists of different lengths)."""

    def generate(
        self, model: nn.Module, prompts: Sequence[Sequence[int]], max_new_tokens: int
    ) -> tuple[list[list[int]], DecodeStats]: ...


__all__ = ["DecodeStats", "Decoder", "Tokenizer"]
