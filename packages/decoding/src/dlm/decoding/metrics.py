"""What a decoding evaluation reports per decoder: speed (TPF, tok/s, the ratio to a baseline),
agreement with the baseline, the NLL of the output under a reference AR model, distinct 4-grams,
acceptance by draft position, and the markdown table of them."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from dlm.attention import Causal
from dlm.core.protocols import DecodeStats, agreement

Runs = dict[str, tuple[list[list[int]], DecodeStats]]
"""Each decoder's outputs and merged stats, by name."""


@torch.no_grad()
def reference_nll(
    reference: nn.Module, prompts: Sequence[Sequence[int]], outputs: Sequence[Sequence[int]]
) -> float:
    """Mean negative log-likelihood per generated token under `reference` (a causal AR model),
    conditioned on each prompt; rows that generated nothing are skipped."""
    device = next(reference.parameters()).device
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


def distinct_ngrams(outputs: Sequence[Sequence[int]], n: int) -> float:
    """Distinct n-grams / all n-grams, pooled over the rows: near 1 for varied text, near 0 for a
    degenerate loop (which a reference model may still find likely, so read it beside ar_nll)."""
    grams = [tuple(row[i : i + n]) for row in outputs for i in range(len(row) - n + 1)]
    return len(set(grams)) / len(grams) if grams else float("nan")


def verify_metrics(stats: DecodeStats) -> dict[str, float]:
    """Of a speculative run: drafter forwards per token (with an external drafter) and per draft
    position the acceptance given it was checked (accept@k) and the share of verify steps that
    accepted at least k drafts (reach@k). Empty for decoders without verify steps."""
    out = {}
    if "drafter" in stats.forwards:
        out["drafter_forwards_per_token"] = stats.drafter_forwards_per_token
    steps = len(stats.accepted)
    for i, rate in enumerate(stats.acceptance_by_position):
        out[f"accept@{i + 1}"] = rate
        out[f"reach@{i + 1}"] = stats.position_accepts[i] / steps if steps else 0.0
    return out


def decode_metrics(
    runs: Runs, prompts: list[list[int]], reference: nn.Module | None, baseline: str | None = None
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
    """A markdown table of the metrics, one row per decoder; columns no decoder has are left out."""
    columns = [
        ("TPF", "tpf", "{:.2f}"),
        ("tau", "tau", "{:.2f}"),
        ("tok/s", "tokens_per_s", "{:.0f}"),
        (f"tok/s vs {baseline}", "speedup", "{:.2f}x"),
        (f"agreement with {baseline}", "agreement", "{:.3f}"),
        ("AR NLL", "ar_nll", "{:.3f}"),
        ("distinct 4-grams", "distinct4", "{:.2f}"),
        ("drafter fwd/tok", "drafter_forwards_per_token", "{:.2f}"),
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
