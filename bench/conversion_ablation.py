"""AR -> block-diffusion conversion ablation: {block_causal, bidirectional} x {position_dependent, uniform}.

Every variant starts from the same tiny pretrained AR checkpoint and trains for the same number of
steps with apps/conversion/configs/tiny.yaml (only the pattern and corruption change), then is
tested. The held-out masked-token CE is measured for every variant in the block-causal context
(clean prefix + noisy block: what left-to-right block decoding gives the model), so the numbers
are comparable. Prints one markdown table.

    python bench/conversion_ablation.py --steps 150            # needs runs/pretrain-tiny/model
    python bench/conversion_ablation.py --pretrain             # trains it first (tiny pretrain config)
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
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
MATRICES = ("attn.q", "attn.k", "attn.v", "attn.o", "mlp.gate", "mlp.up", "mlp.down")


def run_variant(pattern: str, corruption: str, init_from: str, steps: int, out: Path) -> dict[str, float]:
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
            f"--model.init_args.init_from={init_from}",
            f"--model.init_args.pattern={PATTERNS[pattern]}",
            f"--model.init_args.corruption={CORRUPTIONS[corruption]}",
            "--model.init_args.eval_pattern=dlm.training.BlockCausalPattern",
            f"--trainer.max_steps={steps}",
            f"--trainer.val_check_interval={max(steps, 1)}",
            f"--trainer.default_root_dir={out / f'{pattern}-{corruption}'}",
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


def table(rows: dict[tuple[str, str], dict[str, float]], ratios: list[str]) -> str:
    head = (
        ["pattern", "corruption"]
        + [f"CE@{r}" for r in ratios]
        + ["AR CE", "drift (matrices)", "drift (embed)", "TPF", "AR NLL of output", "s"]
    )
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (pattern, corruption), r in rows.items():
        drift = sum(r[f"test/drift/{m}"] for m in MATRICES) / len(MATRICES)
        cells = [pattern, corruption]
        cells += [f"{r[f'test/ce@{x}']:.3f}" for x in ratios]
        cells += [f"{r['test/ar_loss']:.3f}", f"{drift:.3f}", f"{r['test/drift/embed']:.3f}"]
        cells += [
            f"{r.get('test/block/tpf', float('nan')):.2f}",
            f"{r.get('test/block/ar_nll', float('nan')):.3f}",
        ]
        cells += [f"{r['seconds']:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
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
    args = parser.parse_args()
    os.environ.setdefault("WANDB_MODE", "offline")
    if args.pretrain:
        main(["fit", "--config", str(PRETRAIN)])
    if not Path(args.init_from).exists():
        raise SystemExit(
            f"{args.init_from} does not exist; run with --pretrain or point --init-from at an AR checkpoint"
        )
    ratios = ["0.15", "0.5", "0.9"]
    # The AR model itself (mask row added, no training): what conversion starts from.
    rows = {
        ("(AR start, 0 steps)", "-"): run_variant(
            "block_causal", "uniform", args.init_from, 0, Path(args.out)
        )
    }
    for pattern, corruption in itertools.product(PATTERNS, CORRUPTIONS):
        rows[(pattern, corruption)] = run_variant(
            pattern, corruption, args.init_from, args.steps, Path(args.out)
        )
    print(
        f"\n{args.steps} steps per variant from {args.init_from}; torch {torch.__version__} on "
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads\n"
    )
    print(table(rows, ratios))


if __name__ == "__main__":
    main_bench()
