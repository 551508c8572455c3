"""A PNG of acceptance by draft position and of accepted lengths per verify step (matplotlib)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from dlm.core.stats import DecodeStats


def plot_acceptance(results: Sequence[tuple[str, DecodeStats]], path: str | Path) -> Path:
    """Left: acceptance rate by draft position; right: histogram of tokens emitted per verify step.
    Decoders without verify steps (AR, block diffusion) are left out."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ValueError("plotting needs matplotlib: pip install 'dlm-decoding[plot]'") from None
    speculative = [(name, s) for name, s in results if s.accepted]
    if not speculative:
        raise ValueError(
            "nothing to plot: none of the decoders has verify steps (AR and block diffusion have none)"
        )
    path = Path(path)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    longest = max(max(s.accepted) for _, s in speculative)
    for name, stats in speculative:
        rates = stats.acceptance_by_position
        left.plot(range(1, len(rates) + 1), rates, marker="o", label=name)
        right.hist(stats.accepted, bins=range(1, longest + 2), align="left", alpha=0.5, label=name)
    left.set(
        xlabel="draft position", ylabel="acceptance rate", ylim=(0, 1.05), title="acceptance by position"
    )
    right.set(xlabel="tokens per verify step", ylabel="steps", title="accepted length")
    left.legend()
    right.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
