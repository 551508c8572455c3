"""AR -> block-diffusion conversion ablation: {block_causal, bidirectional} x {position_dependent, uniform}.

Every variant starts from the same tiny pretrained AR checkpoint and trains for the same number of
steps with apps/conversion/configs/tiny.yaml (only the pattern and corruption change), then is
tested. The held-out masked-token CE is measured for every variant in the block-causal context
(clean prefix + noisy block: what left-to-right block decoding gives the model), so the numbers
are comparable. Prints one markdown table: with several --seeds, each cell is the mean ± the
sample standard deviation over the seeds (a seed sets seed_everything, hence the data order, and
the corruption's seed); --json keeps every seed's figures, rewritten after each run.

    python bench/conversion_ablation.py --steps 150            # needs runs/pretrain-tiny/model
    python bench/conversion_ablation.py --pretrain             # trains it first (tiny pretrain config)
    python bench/conversion_ablation.py --steps 300 --seeds 0 1 2 --json runs/ablation.json
    python bench/conversion_ablation.py --report runs/ablation.json   # the table of a saved run (or part)
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from dlm.training.cli import DLMCLI, main
from dlm.training.data import PackedTextDataModule
from dlm.training.modules import LanguageModule

ROOT = Path(__file__).resolve().parents[1]
PRETRAIN = ROOT / "apps/pretrain/configs/tiny.yaml"
CONVERSION = ROOT / "apps/conversion/configs/tiny.yaml"
PATTERNS = {
    "block_causal": "dlm.training.BlockCausalPattern",
    "bidirectional": "dlm.training.BidirectionalPattern",
}
CORRUPTIONS = {
    "position_dependent": "dlm.core.masking.PositionDependent",
    "uniform": "dlm.core.masking.Uniform",
}
RATIOS = ["0.15", "0.5", "0.9"]
MATRICES = ("attn.q", "attn.k", "attn.v", "attn.o", "mlp.gate", "mlp.up", "mlp.down")


def run_variant(
    pattern: str, corruption: str, init_from: str, steps: int, out: Path, seed: int = 0
) -> dict[str, float]:
    cli = DLMCLI(
        LanguageModule,
        PackedTextDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        run=False,
        save_config_callback=None,
        args=[
            "--config",
            str(CONVERSION),
            f"--seed_everything={seed}",
            f"--model.init_args.seed={seed}",
            f"--model.init_args.init_from={init_from}",
            f"--model.init_args.pattern={PATTERNS[pattern]}",
            f"--model.init_args.corruption={CORRUPTIONS[corruption]}",
            "--model.init_args.eval_pattern=dlm.training.BlockCausalPattern",
            f"--trainer.max_steps={steps}",
            f"--trainer.val_check_interval={max(steps, 1)}",
            f"--trainer.default_root_dir={out / f'{pattern}-{corruption}-seed{seed}'}",
            "--trainer.logger=false",
            "--trainer.callbacks=[]",
            "--trainer.enable_checkpointing=false",
            "--trainer.enable_progress_bar=false",
            "--trainer.enable_model_summary=false",
        ],
    )
    start = time.perf_counter()
    if steps:
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    (results,) = cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False)
    results["seconds"] = time.perf_counter() - start
    results["train_loss"] = float(cli.trainer.callback_metrics.get("train/loss", float("nan")))
    return results


def cell(values: list[float], digits: int) -> str:
    """The mean, with ± the sample standard deviation when there are several seeds."""
    mean = statistics.fmean(values)
    if len(values) == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def table(rows: dict[tuple[str, str], list[dict[str, float]]], ratios: list[str]) -> str:
    head = (
        ["pattern", "corruption"]
        + [f"CE@{r}" for r in ratios]
        + ["AR CE", "drift (matrices)", "drift (embed)", "TPF", "AR NLL of output", "distinct 4-grams", "s"]
    )
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (pattern, corruption), runs in rows.items():
        drift = [sum(r[f"test/drift/{m}"] for m in MATRICES) / len(MATRICES) for r in runs]
        cells = [pattern, corruption]
        cells += [cell([r[f"test/ce@{x}"] for r in runs], 3) for x in ratios]
        cells += [cell([r["test/ar_loss"] for r in runs], 3), cell(drift, 3)]
        cells += [cell([r["test/drift/embed"] for r in runs], 3)]
        cells += [cell([r.get("test/block/tpf", float("nan")) for r in runs], 2)]
        cells += [cell([r.get("test/block/ar_nll", float("nan")) for r in runs], 3)]
        cells += [cell([r.get("test/block/distinct4", float("nan")) for r in runs], 3)]
        cells += [f"{statistics.fmean(r['seconds'] for r in runs):.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def paired(rows: dict[tuple[str, str], list[dict[str, float]]]) -> str:
    """position_dependent - uniform per pattern, seed by seed (a seed fixes the data order and the
    held-out masks, so the difference cancels the eval sample's noise): mean ± sample std."""
    lines = []
    for pattern in PATTERNS:
        pd, un = rows.get((pattern, "position_dependent"), []), rows.get((pattern, "uniform"), [])
        both = [(a, b) for a in pd for b in un if a["seed"] == b["seed"]]
        if not both:
            continue
        keys = [f"test/ce@{x}" for x in RATIOS] + ["test/ar_loss", "test/block/tpf"]
        diffs = [cell([a[k] - b[k] for a, b in both], 3) for k in keys]
        names = [f"CE@{x}" for x in RATIOS] + ["AR CE", "TPF"]
        lines.append(
            f"{pattern}, position_dependent - uniform over {len(both)} seeds: "
            + ", ".join(f"{n} {d}" for n, d in zip(names, diffs, strict=True))
        )
    return "\n".join(lines)


def main_bench() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--init-from", default="runs/pretrain-tiny/model", help="the AR checkpoint to convert"
    )
    parser.add_argument(
        "--pretrain", action="store_true", help="train it first with the tiny pretrain config"
    )
    parser.add_argument("--steps", type=int, default=150, help="training steps of every variant")
    parser.add_argument("--out", default="runs/conversion-ablation", help="where the variants run")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="one run of every row per seed")
    parser.add_argument("--json", help="write every seed's results here (after each run)")
    parser.add_argument("--report", help="print the table of a --json file (finished or not) and exit")
    args = parser.parse_args()
    if args.report:
        saved = json.loads(Path(args.report).read_text())
        rows = {(pattern, corruption): runs for pattern, corruption, runs in saved["rows"] if runs}
        print(f"seeds run: {sorted({r['seed'] for runs in rows.values() for r in runs})}\n")
        print(table(rows, RATIOS))
        print("\n" + paired(rows))
        return
    if len(set(args.seeds)) != len(args.seeds):
        raise SystemExit(f"--seeds must be distinct, got {args.seeds}")
    os.environ.setdefault("WANDB_MODE", "offline")
    if args.pretrain:
        main(["fit", "--config", str(PRETRAIN)])
    if not Path(args.init_from).exists():
        raise SystemExit(
            f"{args.init_from} does not exist; run with --pretrain or point --init-from at an AR checkpoint"
        )
    # The AR model itself (mask row added, no training): what conversion starts from.
    variants = [("(AR start, 0 steps)", "-")] + list(itertools.product(PATTERNS, CORRUPTIONS))
    rows: dict[tuple[str, str], list[dict[str, float]]] = {v: [] for v in variants}
    for seed in args.seeds:
        for pattern, corruption in variants:
            if corruption == "-":
                result = run_variant("block_causal", "uniform", args.init_from, 0, Path(args.out), seed)
            else:
                result = run_variant(pattern, corruption, args.init_from, args.steps, Path(args.out), seed)
            rows[pattern, corruption].append({"seed": seed, **result})
            print(f"seed {seed}, {pattern} / {corruption}: {result['seconds']:.0f} s", flush=True)
            if args.json:
                with open(args.json, "w") as f:
                    json.dump({"args": vars(args), "rows": [[*k, v] for k, v in rows.items()]}, f, indent=1)
    print(
        f"\n{args.steps} steps per variant from {args.init_from}, seeds {args.seeds}; torch "
        f"{torch.__version__} on {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads\n"
    )
    print(table({k: v for k, v in rows.items() if v}, RATIOS))


if __name__ == "__main__":
    main_bench()
