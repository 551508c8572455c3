"""Test-time evaluation with decoders: tokens per forward, speed and agreement against a baseline
decoder, and the reference AR model's NLL of what was generated. Decoders arrive as
dlm.core.protocols.Decoder objects, so training never imports dlm.decoding."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from dlm.attention import Causal
from dlm.core import Transformer
from dlm.core.protocols import Decoder, DecodeStats, agreement


@dataclass(frozen=True)
class DecodeEval:
    prompts: int = 8
    """Held-out prompts per process (the starts of the first test samples)."""
    prompt_tokens: int = 32
    """Tokens per prompt."""
    max_new_tokens: int = 32
    """Tokens each decoder generates per prompt."""
    batch_size: int | None = None
    """Prompts decoded together; None: all at once. 1 measures per-prompt latency, where a
    speculative decoder's fewer forwards show fully in tok/s (a batch waits for its slowest row)."""


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


def generate_in_batches(
    decoder: Decoder,
    model: Transformer,
    prompts: list[list[int]],
    max_new_tokens: int,
    batch_size: int | None = None,
) -> tuple[list[list[int]], DecodeStats]:
    """decoder.generate over consecutive batches of batch_size prompts (None: one batch), with the
    stats of every batch merged."""
    size = batch_size or len(prompts)
    outputs, stats = [], DecodeStats()
    for start in range(0, len(prompts), size):
        out, part = decoder.generate(model, prompts[start : start + size], max_new_tokens)
        outputs += out
        stats = stats.merged(part)
    return outputs, stats


def decode_interleaved(
    decoders: dict[str, Decoder],
    model: Transformer,
    prompts: list[list[int]],
    max_new_tokens: int,
    batch_size: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, tuple[list[list[int]], DecodeStats]]:
    """Every decoder's (outputs, merged stats) over the prompts in batches of batch_size (None: one
    batch), interleaved: each batch is decoded by every decoder before the next batch, so a load
    change on a shared machine weighs on all of them alike and their tok/s stay comparable.
    `progress` is called with the decoder's name after each generate call."""
    size = batch_size or len(prompts)
    runs = {name: ([], DecodeStats()) for name in decoders}
    for start in range(0, len(prompts), size):
        for name, decoder in decoders.items():
            out, part = decoder.generate(model, prompts[start : start + size], max_new_tokens)
            runs[name] = (runs[name][0] + out, runs[name][1].merged(part))
            if progress is not None:
                progress(name)
    return runs


def run_decoders(
    decoders: dict[str, Decoder],
    model: Transformer,
    prompts: list[list[int]],
    max_new_tokens: int,
    reference: Transformer | None,
    batch_size: int | None = None,
) -> dict[str, float]:
    """decode_metrics of every decoder's run, plus "<name>/distinct4" (see distinct_ngrams)."""
    runs = {
        name: generate_in_batches(d, model, prompts, max_new_tokens, batch_size)
        for name, d in decoders.items()
    }
    metrics = decode_metrics(runs, prompts, reference)
    for name, (outputs, _) in runs.items():
        metrics[f"{name}/distinct4"] = distinct_ngrams(outputs, 4)
    return metrics


def distinct_ngrams(outputs: Sequence[Sequence[int]], n: int) -> float:
    """Distinct n-grams / all n-grams, pooled over the rows: near 1 for varied text, near 0 for a
    degenerate loop (which a reference model may still find likely, so read it beside ar_nll)."""
    grams = [tuple(row[i : i + n]) for row in outputs for i in range(len(row) - n + 1)]
    return len(set(grams)) / len(grams) if grams else float("nan")


def decode_metrics(
    runs: dict[str, tuple[list[list[int]], DecodeStats]],
    prompts: list[list[int]],
    reference: Transformer | None,
    baseline: str | None = None,
) -> dict[str, float]:
    """Per decoder run (outputs, stats): "<name>/tpf", "<name>/tokens_per_s", "<name>/tau" (decoders
    with verify steps), "<name>/ar_nll" (with a reference model) and, when `baseline` names one of
    the runs, "<name>/speedup" (tok/s ratio to it) and "<name>/agreement" (same token at the same
    position as its output)."""
    out = {}
    base = runs.get(baseline) if baseline is not None else None
    for name, (generated, stats) in runs.items():
        out[f"{name}/tpf"] = stats.tpf
        out[f"{name}/tokens_per_s"] = stats.tokens_per_second
        if stats.accepted:
            out[f"{name}/tau"] = stats.tau
        if base is not None:
            base_speed = base[1].tokens_per_second
            out[f"{name}/speedup"] = stats.tokens_per_second / base_speed if base_speed else 0.0
            out[f"{name}/agreement"] = agreement(generated, base[0])
        if reference is not None:
            out[f"{name}/ar_nll"] = reference_nll(reference, prompts, generated)
    return out


def decode_table(names: Sequence[str], metrics: dict[str, float], baseline: str | None = None) -> str:
    """A markdown table of decode_metrics' numbers, one row per decoder."""
    columns = [
        ("TPF", "tpf", "{:.2f}"),
        ("tau", "tau", "{:.2f}"),
        ("tok/s", "tokens_per_s", "{:.0f}"),
        (f"tok/s vs {baseline}", "speedup", "{:.2f}x"),
        (f"agreement with {baseline}", "agreement", "{:.3f}"),
        ("AR NLL", "ar_nll", "{:.3f}"),
        ("distinct 4-grams", "distinct4", "{:.2f}"),
    ]
    columns = [c for c in columns if any(f"{n}/{c[1]}" in metrics for n in names)]
    lines = [
        "| decoder | " + " | ".join(c[0] for c in columns) + " |",
        "|---|" + "---:|" * len(columns),
    ]
    for name in names:
        cells = [
            fmt.format(metrics[f"{name}/{key}"]) if f"{name}/{key}" in metrics else "-"
            for _, key, fmt in columns
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
