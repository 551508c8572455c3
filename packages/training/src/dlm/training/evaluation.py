"""Test-time evaluation with decoders: tokens per forward and the reference AR model's NLL of what
was generated. Decoders arrive as dlm.core.protocols.Decoder objects, so training never imports
dlm.decoding."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from dlm.attention import Causal
from dlm.core import Transformer
from dlm.core.protocols import Decoder


@dataclass(frozen=True)
class DecodeEval:
    prompts: int = 8
    """Held-out prompts per process (the starts of the first test samples)."""
    prompt_tokens: int = 32
    """Tokens per prompt."""
    max_new_tokens: int = 32
    """Tokens each decoder generates per prompt."""


@torch.no_grad()
def reference_nll(
    reference: Transformer, prompts: Sequence[Sequence[int]], outputs: Sequence[Sequence[int]]
) -> float:
    """Mean negative log-likelihood per generated token under `reference` (a causal AR model),
    conditioned on each prompt; rows that generated nothing are skipped."""
    device = reference.embed.weight.device
    total, count = 0.0, 0
    for prompt, out in zip(prompts, outputs, strict=True):
        if not out:
            continue
        seq = torch.tensor([list(prompt) + list(out)], device=device)
        pos = torch.arange(seq.shape[1], device=device).unsqueeze(0)
        logits = reference(seq, pos, Causal()).float()
        pred = logits[0, len(prompt) - 1 : -1]
        total += F.cross_entropy(pred, seq[0, len(prompt) :], reduction="sum").item()
        count += len(out)
    return total / count if count else float("nan")


def run_decoders(
    decoders: dict[str, Decoder],
    model: Transformer,
    prompts: list[list[int]],
    max_new_tokens: int,
    reference: Transformer | None,
) -> dict[str, float]:
    """{"<name>/tpf", "<name>/tokens_per_s", "<name>/ar_nll"} for every decoder."""
    out = {}
    for name, decoder in decoders.items():
        generated, stats = decoder.generate(model, prompts, max_new_tokens)
        out[f"{name}/tpf"] = stats.tpf
        out[f"{name}/tokens_per_s"] = stats.tokens_per_second
        if reference is not None:
            out[f"{name}/ar_nll"] = reference_nll(reference, prompts, generated)
    return out
