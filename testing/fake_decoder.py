"""A decoder stand-in for tests of what surrounds decoding (metrics, the evaluation, the training
modules' test stage): it repeats each prompt's last token, `per_forward` tokens per forward, with
optional verify steps, and follows dlm.core.protocols.Decoder."""

from __future__ import annotations

from dataclasses import dataclass

from dlm.core.stats import DecodeStats


@dataclass
class FakeDecoder:
    """Repeats the prompt's last token; `per_forward` tokens per forward; optional verify steps."""

    per_forward: int = 1
    speculative: bool = False
    k: int | None = None
    needs_drafter = False

    def check(self, model) -> None:
        pass

    def bind_drafter(self, drafter) -> None:
        raise ValueError("FakeDecoder drafts with its model")

    def generate(self, model, prompts, max_new_tokens):
        outs = [[p[-1]] * max_new_tokens for p in prompts]
        tokens = len(prompts) * max_new_tokens
        steps = tokens // self.per_forward
        stats = DecodeStats(
            forwards={"target": steps}, tokens=tokens, rows=len(prompts), seconds=steps * 1e-3
        )
        if self.speculative and max_new_tokens:
            for _ in range(steps):
                stats.record_verify(self.per_forward, self.per_forward, self.per_forward - 1)
        return outs, stats
