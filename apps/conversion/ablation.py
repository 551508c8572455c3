"""AR -> block-diffusion conversion ablation: {block_causal, bidirectional} x {position_dependent, uniform}.

Every variant starts from the same tiny pretrained AR checkpoint and trains for the same number of
steps with apps/conversion/configs/tiny.yaml (only the pattern and corruption change), then is
tested. The held-out masked-token CE is measured for every variant in the block-causal context
(clean prefix + noisy block: what left-to-right block decoding gives the model), so the numbers
are comparable. Prints one markdown table: with several --seeds, each cell is the mean ± the
sample standard deviation over the seeds (a seed sets seed_everything, hence the data order, and
the corruption's seed); --json keeps every seed's figures, rewritten after each run.

    python apps/conversion/ablation.py --steps 150            # needs runs/pretrain-tiny/model
    python apps/conversion/ablation.py --pretrain             # trains it first (tiny pretrain config)
    python apps/conversion/ablation.py --steps 300 --seeds 0 1 2 --json runs/ablation.json
    python apps/conversion/ablation.py --report runs/ablation.json   # the table of a saved run (or part)

The same on a real checkpoint (apps/conversion/README.md, "SmolLM2-135M-Instruct"): --config picks
the conversion config, --variants a subset, --ar-continuation adds the same checkpoint trained as
pure AR on the same steps and data (the retention baseline), --ood-corpus tests every row again on
another embedded corpus, --save exports every trained row for dlm-eval:

    python apps/conversion/ablation.py --config apps/conversion/configs/smollm2-135m.yaml \
        --init-from checkpoints/SmolLM2-135M-Instruct --steps 40 --ar-continuation \
        --ood-corpus shakespeare --save runs/conversion-smollm2 --json runs/conversion-smollm2.json
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

from dlm.core.checkpoint import save_checkpoint
from dlm.training import ARLanguageModel
from dlm.training.callbacks import training_record
from dlm.training.cli import DLMCLI, main
from dlm.training.data import PackedTextDataModule
from dlm.training.modules import LanguageModule

ROOT = Path(__file__).resolve().parents[2]
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
AR_ROW = ("(AR continued)", "-")
START_ROW = ("(AR start, 0 steps)", "-")
MATRICES = ("attn.q", "attn.k", "attn.v", "attn.o", "mlp.gate", "mlp.up", "mlp.down")


def run_variant(
    pattern: str, corruption: str, init_from: str, steps: int, out: Path, seed: int = 0, options=None
) -> dict[str, float]:
    """Train one row (pattern "(AR continued)": ARLanguageModel from the same checkpoint, same data,
    steps and optimizer settings) and test it, in-domain and, with --ood-corpus, on that corpus."""
    options = options or argparse.Namespace(config=str(CONVERSION), ood_corpus=None, save=None)
    name = "ar-continued" if pattern == AR_ROW[0] else f"{pattern}-{corruption}"
    cli = DLMCLI(
        LanguageModule,
        PackedTextDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        run=False,
        save_config_callback=None,
        args=[
            "--config",
            options.config,
            f"--seed_everything={seed}",
            f"--model.init_args.seed={seed}",
            f"--model.init_args.init_from={init_from}",
            f"--model.init_args.pattern={PATTERNS.get(pattern, PATTERNS['block_causal'])}",
            f"--model.init_args.corruption={CORRUPTIONS.get(corruption, CORRUPTIONS['uniform'])}",
            "--model.init_args.eval_pattern=dlm.training.BlockCausalPattern",
            f"--trainer.max_steps={steps}",
            f"--trainer.val_check_interval={max(steps, 1)}",
            f"--trainer.default_root_dir={out / f'{name}-seed{seed}'}",
            "--trainer.logger=false",
            "--trainer.callbacks=[]",
            "--trainer.enable_checkpointing=false",
            "--trainer.enable_progress_bar=false",
            "--trainer.enable_model_summary=false",
        ],
    )
    module, data = cli.model, cli.datamodule
    if pattern == AR_ROW[0]:
        module = ARLanguageModel(init_from=init_from, optimization=cli.model.optimization)
    start = time.perf_counter()
    if steps:
        cli.trainer.fit(module, datamodule=data)
    (results,) = cli.trainer.test(module, datamodule=data, verbose=False)
    results["seconds"] = time.perf_counter() - start
    results["train_loss"] = float(cli.trainer.callback_metrics.get("train/loss", float("nan")))
    if pattern == AR_ROW[0]:
        results["test/ar_loss"] = results.pop("test/loss")
    if options.ood_corpus:
        ood = PackedTextDataModule(
            options.ood_corpus, seq_len=data.seq_len, batch_size=data.batch_size, tokenizer=data.tokenizer
        )
        module.evaluation = None  # decode once, in-domain
        (other,) = cli.trainer.test(module, datamodule=ood, verbose=False)
        other = {
            k.replace("test/loss", "test/ar_loss") if pattern == AR_ROW[0] else k: v for k, v in other.items()
        }
        results.update({k.replace("test/", "ood/"): v for k, v in other.items()})
    if options.save and steps:
        save_checkpoint(
            module.model, module.tokenizer, Path(options.save) / f"{name}-seed{seed}", training_record(module)
        )
    return results


def cell(values: list[float], digits: int) -> str:
    """The mean, with ± the sample standard deviation when there are several seeds."""
    values = [v for v in values if v == v]  # a row without the metric (the AR row's masked CE) is nan
    if not values:
        return "-"
    mean = statistics.fmean(values)
    if len(values) == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def relative(runs: list[dict[str, float]], base: list[dict[str, float]] | None, key: str) -> str:
    """key's change relative to the base row's, seed by seed (same data order and test batches)."""
    by_seed = {r["seed"]: r[key] for r in base or [] if key in r}
    changes = [(r[key] / by_seed[r["seed"]] - 1) * 100 for r in runs if key in r and r["seed"] in by_seed]
    return f"{cell(changes, 1)}%" if changes else "-"


def table(rows: dict[tuple[str, str], list[dict[str, float]]], ratios: list[str]) -> str:
    ood = any("ood/ar_loss" in r for runs in rows.values() for r in runs)
    start, continued = rows.get(START_ROW), rows.get(AR_ROW)
    head = ["pattern", "corruption"] + [f"CE@{r}" for r in ratios] + ["AR CE", "vs start"]
    head += ["vs AR continued"] if continued else []
    head += ["OOD AR CE", "OOD vs start"] + (["OOD vs AR continued"] if continued else []) if ood else []
    head += ["drift (matrices)", "drift (embed)", "TPF", "AR NLL of output", "distinct 4-grams", "s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (pattern, corruption), runs in rows.items():
        drift = [sum(r.get(f"test/drift/{m}", float("nan")) for m in MATRICES) / len(MATRICES) for r in runs]
        cells = [pattern, corruption]
        cells += [cell([r.get(f"test/ce@{x}", float("nan")) for r in runs], 3) for x in ratios]
        cells += [cell([r["test/ar_loss"] for r in runs], 4), relative(runs, start, "test/ar_loss")]
        cells += [relative(runs, continued, "test/ar_loss")] if continued else []
        if ood:
            cells += [cell([r.get("ood/ar_loss", float("nan")) for r in runs], 4)]
            cells += [relative(runs, start, "ood/ar_loss")]
            cells += [relative(runs, continued, "ood/ar_loss")] if continued else []
        cells += [cell(drift, 3), cell([r.get("test/drift/embed", float("nan")) for r in runs], 3)]
        cells += [cell([r.get("test/block/tpf", float("nan")) for r in runs], 2)]
        cells += [cell([r.get("test/block/ar_nll", float("nan")) for r in runs], 3)]
        cells += [cell([r.get("test/block/distinct4", float("nan")) for r in runs], 3)]
        cells += [f"{statistics.fmean(r['seconds'] for r in runs):.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def differences(first: list[dict], second: list[dict], label: str) -> str | None:
    """first - second, seed by seed (a seed fixes the data order and the held-out masks, so the
    difference cancels the eval sample's noise): mean ± sample std, or None without a common seed."""
    both = [(a, b) for a in first for b in second if a["seed"] == b["seed"]]
    if not both:
        return None
    keys = [f"test/ce@{x}" for x in RATIOS] + ["test/ar_loss", "ood/ar_loss", "test/block/tpf"]
    names = [f"CE@{x}" for x in RATIOS] + ["AR CE", "OOD AR CE", "TPF"]
    diffs = [
        f"{n} {cell([a[k] - b[k] for a, b in both], 3)}"
        for k, n in zip(keys, names, strict=True)
        if all(k in a and k in b for a, b in both)
    ]
    return f"{label} over {len(both)} seeds: " + ", ".join(diffs)


def paired(rows: dict[tuple[str, str], list[dict[str, float]]]) -> str:
    """position_dependent - uniform per pattern and block_causal - bidirectional per corruption."""
    lines = []
    for pattern in PATTERNS:
        pd, un = rows.get((pattern, "position_dependent"), []), rows.get((pattern, "uniform"), [])
        lines.append(differences(pd, un, f"{pattern}, position_dependent - uniform"))
    for corruption in CORRUPTIONS:
        bc, bi = rows.get(("block_causal", corruption), []), rows.get(("bidirectional", corruption), [])
        lines.append(differences(bc, bi, f"{corruption}, block_causal - bidirectional"))
    return "\n".join(line for line in lines if line)


def merged(paths: list[str]) -> dict[tuple[str, str], list[dict[str, float]]]:
    """The rows of several --json files; a (row, seed) run twice counts once (the first file's)."""
    rows: dict[tuple[str, str], list[dict[str, float]]] = {}
    for path in paths:
        for pattern, corruption, runs in json.loads(Path(path).read_text())["rows"]:
            kept = rows.setdefault((pattern, corruption), [])
            seeds = {r["seed"] for r in kept}
            kept.extend(r for r in runs if r["seed"] not in seeds)
    return {key: runs for key, runs in rows.items() if runs}


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
    parser.add_argument(
        "--report", nargs="+", help="print the table of --json files (finished or not, merged) and exit"
    )
    parser.add_argument(
        "--config", default=str(CONVERSION), help="the conversion config every row starts from"
    )
    parser.add_argument(
        "--variants",
        nargs="*",
        metavar="PATTERN/CORRUPTION",
        help=f"rows to train (default: all of {list(PATTERNS)} x {list(CORRUPTIONS)}; none given: "
        "only the AR rows, with --ar-continuation the retention baseline for a run of another length)",
    )
    parser.add_argument(
        "--ar-continuation", action="store_true", help="also the checkpoint continued as pure AR (retention)"
    )
    parser.add_argument("--ood-corpus", help="test every row again on this embedded corpus (out of domain)")
    parser.add_argument("--save", help="export every trained row's model under this directory")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.report:
        rows = merged(args.report)
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
    trained = list(itertools.product(PATTERNS, CORRUPTIONS))
    if args.variants is not None:
        chosen = [tuple(v.split("/", 1)) for v in args.variants]
        unknown = [v for v, c in zip(args.variants, chosen, strict=True) if c not in trained]
        if unknown:
            raise SystemExit(f"--variants: {unknown} not among {[f'{p}/{c}' for p, c in trained]}")
        trained = chosen
    variants = [START_ROW] + ([AR_ROW] if args.ar_continuation else []) + trained
    rows: dict[tuple[str, str], list[dict[str, float]]] = {v: [] for v in variants}
    for seed in args.seeds:
        for pattern, corruption in variants:
            steps = 0 if (pattern, corruption) == START_ROW else args.steps
            result = run_variant(pattern, corruption, args.init_from, steps, Path(args.out), seed, args)
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
