"""The SmolLM2 tri-mode tables of apps/trimode/README.md, from what apps/trimode/smollm2.sh wrote.

    python apps/trimode/smollm2_report.py        # every run under runs/trimode-smollm2/

AR CE retention is read against the original checkpoint and against the same checkpoint continued
as pure AR for the same steps and data: the "(AR start, 0 steps)" and "(AR continued)" rows of the
conversion ablation (apps/conversion/smollm2.sh train: same config values, corpus, seed 0 data
order, test batches and bf16 autocast), from runs/conversion-smollm2*.json, each run against the
rows of its own step count ("-" where there are none). The run's seed sets the
corruption draws, not the data order (the data module's own seed does), so the AR rows are the same
for every seed (identical for seeds 0 and 1): a seed without its own rows is read against another's.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

RUNS = Path("runs/trimode-smollm2")
ABLATIONS = "conversion-smollm2*.json"


def tested(path: Path) -> dict[str, float]:
    """The metrics of a `dlm test` table (its │ name │ value │ rows)."""
    rows = re.findall(r"│\s*(test/\S+)\s*│\s*([-\d.e+]+)\s*│", path.read_text()) if path.is_file() else []
    return {name: float(value) for name, value in rows}


def baselines() -> dict[int, dict[str, dict[str, float]]]:
    """steps -> seed -> {start, continued} x {in, ood} AR CE from the conversion ablation's runs."""
    out: dict[int, dict[str, dict[str, float]]] = {}
    for path in sorted(Path("runs").glob(ABLATIONS)):
        saved = json.loads(path.read_text())
        by_seed = out.setdefault(saved["args"]["steps"], {})
        for pattern, _, runs in saved["rows"]:
            key = {"(AR start, 0 steps)": "start", "(AR continued)": "continued"}.get(pattern)
            for r in runs if key else []:
                by_seed.setdefault(str(r["seed"]), {}).update(
                    {f"{key}/in": r["test/ar_loss"], f"{key}/ood": r["ood/ar_loss"]}
                )
    return out


def change(value: float, base: float | None) -> str:
    return f"{(value / base - 1) * 100:+.1f}%" if base else "-"


def main() -> None:
    runs = sorted(p for p in RUNS.glob("w*-b*-s*") if (p / "model").is_dir())
    if not runs:
        sys.exit(f"no runs under {RUNS}: run apps/trimode/smollm2.sh first")
    base = baselines()
    print(
        "| run | AR CE in-domain | vs original | vs AR continued | AR CE shakespeare | vs original "
        "| vs AR continued | masked CE / acc in-domain |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for run in runs:
        seed = run.name.split("-s")[1].split("-")[0]
        steps = int(run.name.split("-t")[1]) if "-t" in run.name else 30
        same_length = base.get(steps, {})  # a baseline of another length would be a silent wrong figure
        b = same_length.get(seed) or next(iter(same_length.values()), {})
        ind, ood = tested(run / "test-stdlib-code.txt"), tested(run / "test-shakespeare.txt")
        if not ind or not ood:
            continue
        print(
            f"| {run.name} | {ind['test/ar_ce']:.4f} | {change(ind['test/ar_ce'], b.get('start/in'))} "
            f"| {change(ind['test/ar_ce'], b.get('continued/in'))} | {ood['test/ar_ce']:.4f} "
            f"| {change(ood['test/ar_ce'], b.get('start/ood'))} | {change(ood['test/ar_ce'], b.get('continued/ood'))} "
            f"| {ind['test/masked_ce']:.2f} / {ind['test/masked_acc']:.3f} |"
        )
    print(
        "\n| run | dtype | decoder | TPF | tau | acceptance by position | tok/s vs AR | agreement with AR |"
    )
    print("|---|---|---|---:|---:|---|---:|---:|")
    for run in runs:
        for path in sorted(run.glob("decode-*.json")):
            if not path.stat().st_size:
                continue
            for r in json.loads(path.read_text()):
                accept = " / ".join(f"{a:.2f}" for a in r["acceptance_by_position"]) or "-"
                print(
                    f"| {run.name} | {path.stem.removeprefix('decode-')} | {r['decoder']} | {r['tpf']:.2f} "
                    f"| {r['tau']:.2f} | {accept} | {r['speedup_vs_ar']:.2f}x | {r['agreement_with_ar']:.3f} |"
                )
    print("\n| run | decoder | pass@1 (HumanEval 1-10, stop strings, fp32) | generated tokens |")
    print("|---|---|---:|---:|")
    for run in runs:
        path = run / "humaneval.json"
        if not path.is_file() or not path.stat().st_size:
            continue
        text = path.read_text()
        report = json.loads(text[text.index("{") :])
        for r in report["decoders"]:
            print(f"| {run.name} | {r['decoder']} | {r['pass@1']:.3f} | {r['tokens']} |")


if __name__ == "__main__":
    main()
