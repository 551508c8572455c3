"""What a decoding evaluation reports per decoder, the one schema of every entry point: speed
(TPF, tok/s, the ratio to a baseline), agreement with the baseline, the NLL of the output under a
reference AR model, distinct 4-grams, acceptance by draft position (and what a task's scorer adds,
e.g. HumanEval's pass@1); the JSON report and the one markdown table of them."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dlm.attention import Causal
from dlm.core.stats import DecodeStats, agreement

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
    """Of a speculative run: drafter forwards per token and their share of the wall time (with an
    external drafter) and per draft position the acceptance given it was checked (accept@k) and
    the share of verify steps that accepted at least k drafts (reach@k). Empty for decoders
    without verify steps."""
    out = {}
    if "drafter" in stats.forwards:
        out["drafter_forwards_per_token"] = stats.drafter_forwards_per_token
        out["drafter_time_share"] = stats.drafter_time_share
    steps = len(stats.accepted)
    for i, rate in enumerate(stats.acceptance_by_position):
        out[f"accept@{i + 1}"] = rate
        out[f"reach@{i + 1}"] = stats.position_accepts[i] / steps if steps else 0.0
    return out


def decode_metrics(
    runs: Runs,
    prompts: Sequence[Sequence[int]] | None,
    reference: nn.Module | None,
    baseline: str | None = None,
) -> dict[str, float]:
    """The one metric schema, per decoder run (outputs, stats): "<name>/tpf", "<name>/tokens_per_s",
    "<name>/distinct4", "<name>/tau" and accept@k / reach@k (decoders with verify steps),
    "<name>/drafter_forwards_per_token" and "<name>/drafter_time_share" (an external drafter),
    "<name>/compile_s" (compiled forwards: the seconds compiling took, apart from tokens_per_s),
    "<name>/ar_nll" (with a reference model and the prompts) and, when `baseline` names one of the
    runs, "<name>/speedup" (tok/s ratio to it) and "<name>/agreement" (same token at the same
    position as its output)."""
    out = {}
    base = runs.get(baseline) if baseline is not None else None
    for name, (generated, stats) in runs.items():
        out[f"{name}/tpf"] = stats.tpf
        out[f"{name}/tokens_per_s"] = stats.tokens_per_second
        if stats.accepted:
            out[f"{name}/tau"] = stats.tau
        if stats.compile_seconds:
            out[f"{name}/compile_s"] = stats.compile_seconds
        if base is not None:
            base_speed = base[1].tokens_per_second
            out[f"{name}/speedup"] = stats.tokens_per_second / base_speed if base_speed else 0.0
            out[f"{name}/agreement"] = agreement(generated, base[0])
        if reference is not None and prompts is not None:
            out[f"{name}/ar_nll"] = reference_nll(reference, prompts, generated)
        out[f"{name}/distinct4"] = distinct_ngrams(generated, 4)
        out.update({f"{name}/{k}": v for k, v in verify_metrics(stats).items()})
    return out


def of(name: str, metrics: Mapping[str, Any]) -> dict[str, Any]:
    """The metrics of decoder `name`, without the "<name>/" prefix."""
    return {key.split("/", 1)[1]: v for key, v in metrics.items() if key.split("/", 1)[0] == name}


def decode_report(
    runs: Runs,
    metrics: Mapping[str, Any],
    decoders: Mapping[str, Any],
    title: str,
    settings: Mapping[str, Any],
    baseline: str | None = None,
) -> dict[str, Any]:
    """The JSON report every entry point writes (a module's test, dlm-decode, dlm-eval): the title,
    the settings, the baseline and, per decoder, its class, counts (rows, tokens, seconds, forwards
    per model) and its metrics as decode_metrics (and a task's scorer) name them."""
    return {
        "title": title,
        "settings": dict(settings),
        "baseline": baseline,
        "decoders": {
            name: {
                "class": type(decoders[name]).__name__,
                "rows": stats.rows,
                "tokens": stats.tokens,
                "seconds": stats.seconds,
                "compile_seconds": stats.compile_seconds,
                "forwards": dict(stats.forwards),
                **of(name, metrics),
            }
            for name, (_, stats) in runs.items()
        },
    }


Cell = Callable[[Mapping[str, Any]], str | None]


def _format(key: str, fmt: str) -> Cell:
    return lambda m: fmt.format(m[key]) if m.get(key) is not None else None


def _pass(m: Mapping[str, Any]) -> str | None:
    if m.get("pass@1") is None:
        return None
    solved = f" ({m['solved']:.0f}/{m['problems']:.0f})" if "solved" in m else ""
    return f"{m['pass@1']:.3f}{solved}"


def _interval(m: Mapping[str, Any]) -> str | None:
    return f"{m['pass@1_low']:.3f}-{m['pass@1_high']:.3f}" if "pass@1_low" in m else None


def _mcnemar(m: Mapping[str, Any]) -> str | None:
    if "mcnemar_p" not in m:
        return None
    return f"+{m['mcnemar_only_this']:.0f}/-{m['mcnemar_only_baseline']:.0f}, p={m['mcnemar_p']:.2f}"


def decode_table(names: Sequence[str], metrics: Mapping[str, Any], baseline: str | None = None) -> str:
    """The one table writer: a markdown table of the metrics, one row per decoder; columns no
    decoder has are left out."""
    columns: list[tuple[str, Cell]] = [
        ("pass@1", _pass),
        ("95% CI", _interval),
        (f"vs {baseline} (+/-, p)", _mcnemar),
        ("TPF", _format("tpf", "{:.2f}")),
        ("tau", _format("tau", "{:.2f}")),
        ("tok/s", _format("tokens_per_s", "{:.0f}")),
        (f"tok/s vs {baseline}", _format("speedup", "{:.2f}x")),
        (f"agreement with {baseline}", _format("agreement", "{:.3f}")),
        ("AR NLL", _format("ar_nll", "{:.3f}")),
        ("distinct 4-grams", _format("distinct4", "{:.2f}")),
        ("drafter fwd/tok", _format("drafter_forwards_per_token", "{:.2f}")),
        ("drafter time", _format("drafter_time_share", "{:.0%}")),
        ("compile s", _format("compile_s", "{:.0f}")),
    ]
    cells = {name: [cell(of(name, metrics)) for _, cell in columns] for name in names}
    keep = [i for i in range(len(columns)) if any(cells[n][i] is not None for n in names)]
    lines = [
        "| decoder | " + " | ".join(columns[i][0] for i in keep) + " |",
        "|---|" + "---:|" * len(keep),
    ]
    for name in names:
        row = [cells[name][i] if cells[name][i] is not None else "-" for i in keep]
        lines.append(f"| {name} | " + " | ".join(row) + " |")
    return "\n".join(lines)
