"""Evaluating a drafter: offline draft accuracy by position (a torchmetrics metric), and at test time
the real thing, speculative decoding with the target verifying (decoders from the config, so
training never imports dlm.decoding), with a plot of acceptance by position."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor, nn
from torchmetrics import Metric

from dlm.core.protocols import Decoder, DecodeStats


class DraftAccuracy(Metric):
    """Per draft position: how often the drafter's argmax equals the target's token, unconditionally
    and given all earlier drafts right (what greedy verification would accept); and the offline
    accepted length, 1 + the number of leading right drafts (the bonus token included, as tau)."""

    full_state_update = False

    def __init__(self, k: int) -> None:
        super().__init__()
        self.k = k
        for name in ("right", "reached", "accepted_given_reached"):
            self.add_state(name, default=torch.zeros(k, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("blocks", default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, logits: Tensor, targets: Tensor) -> None:
        right = (logits.argmax(-1) == targets).double()  # (N, K)
        leading = right.cumprod(-1)
        reached = torch.cat([torch.ones_like(leading[:, :1]), leading[:, :-1]], -1)
        self.right += right.sum(0)
        self.reached += reached.sum(0)
        self.accepted_given_reached += leading.sum(0)
        self.blocks += right.shape[0]

    def compute(self) -> dict[str, Tensor]:
        blocks = self.blocks.clamp(min=1)
        out = {"tau": 1 + self.accepted_given_reached.sum() / blocks}
        for i in range(self.k):
            out[f"acc@{i + 1}"] = self.right[i] / blocks
            out[f"accept@{i + 1}"] = self.accepted_given_reached[i] / self.reached[i].clamp(min=1)
        return {name: value.float() for name, value in out.items()}


def decoder_results(stats: DecodeStats) -> dict[str, float]:
    """tau, TPF, drafter forwards per token, and per position: acceptance given the position was
    checked (accept@k) and the share of verify steps that accepted at least k drafts (reach@k)."""
    out = {"tau": stats.tau, "tpf": stats.tpf, "tokens_per_s": stats.tokens_per_second}
    if "drafter" in stats.forwards:
        out["drafter_forwards_per_token"] = stats.drafter_forwards_per_token
    steps = len(stats.accepted)
    for i, rate in enumerate(stats.acceptance_by_position):
        out[f"accept@{i + 1}"] = rate
        out[f"reach@{i + 1}"] = stats.position_accepts[i] / steps if steps else 0.0
    return out


def run_speculation(
    decoders: dict[str, Decoder],
    drafter: nn.Module,
    target: nn.Module,
    prompts: list[list[int]],
    max_new_tokens: int,
    batch_size: int | None = None,
) -> dict[str, DecodeStats]:
    """Each decoder's stats on the prompts (in batches of batch_size; None: all at once) with
    `target` as the model. A decoder with a `drafter` attribute (dlm.decoding.SpeculativeDecoder)
    gets the drafter being trained."""
    step = batch_size or len(prompts)
    out = {}
    for name, decoder in decoders.items():
        if hasattr(decoder, "drafter"):
            decoder.drafter = drafter
        stats = DecodeStats()
        for start in range(0, len(prompts), step):
            stats = stats.merged(decoder.generate(target, prompts[start : start + step], max_new_tokens)[1])
        out[name] = stats
    return out


def save_report(results: dict[str, dict[str, float]], stats: dict[str, DecodeStats], directory: Path) -> None:
    """drafter_eval.json (the numbers) and acceptance.png (acceptance by position) in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "drafter_eval.json").write_text(json.dumps(results, indent=2, sort_keys=True))
    plotted = [(name, s) for name, s in stats.items() if s.accepted]
    if plotted:
        plot_acceptance(plotted, directory / "acceptance.png")


def plot_acceptance(stats: Sequence[tuple[str, DecodeStats]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, s in stats:
        rates = s.acceptance_by_position
        ax.plot(range(1, len(rates) + 1), rates, marker="o", label=f"{name} (tau {s.tau:.2f})")
    ax.set(xlabel="draft position k", ylabel="P(accept k | drafts < k accepted)", ylim=(0, 1.05))
    ax.set_title("drafter acceptance by position")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
