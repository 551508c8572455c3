"""`dlm-ablate`: run an ablation, a list of config overlays, as one `dlm` run per variant and seed.

An ablation is a YAML file, `apps/<experiment>/ablations/<name>.yaml`:

    config: apps/conversion/configs/tiny.yaml    # the base config (a list: several, in order)
    seeds: [0, 1]                                # each seed sets seed_everything (and seed_keys)
    seed_keys: [model.init_args.seed]            # other keys that take the seed (optional)
    set:                                         # overlay of every run: dotted key -> value
      trainer.max_steps: 30
    variants:                                    # name -> {set, config, command}
      block_causal:
        set: {model.init_args.pattern: dlm.training.BlockCleanPattern}
      bidirectional:
        set: {model.init_args.pattern: dlm.training.BidirectionalPattern}
      ar-start:
        command: test                            # `dlm test` instead of `dlm fit` (default)
        config: [apps/conversion/configs/some-overlay.yaml]
      block_causal-ood:                          # "{seed}", "{variant}", "{run}" are substituted
        command: test
        set: {ckpt_path: "runs/conversion/patterns/block_causal/seed{seed}/checkpoints/last.ckpt"}

Run (v, s) is `dlm <command> --config <config> [--config <variant config>] --<key>=<value> ...
--seed_everything=s`, with its logs and checkpoints under `runs/<experiment>/<name>/<v>/seed<s>/`
(trainer.default_root_dir, "{run}" in a value; loggers and callbacks are the overlay's business),
where it writes its results.json; when the run succeeds, that file is copied to
`apps/<experiment>/results/<name>/<v>/seed<s>.json` (a failed or killed run leaves none there).
A run whose results file exists is skipped unless --force. Runs go one at a time, in order,
variant by variant within a seed.

    dlm-ablate apps/conversion/ablations/patterns.yaml                 # every variant x seed
    dlm-ablate apps/conversion/ablations/patterns.yaml --seeds 0 --variants bidirectional
    dlm-ablate apps/conversion/ablations/patterns.yaml --dry-run       # print the commands
    dlm-report                                                          # then the README tables
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

KEYS = {"config", "seeds", "seed_keys", "set", "variants", "experiment"}
VARIANT_KEYS = {"set", "config", "command"}
COMMANDS = ("fit", "test", "validate")


@dataclass
class Run:
    variant: str
    seed: int
    args: list[str]
    results: Path  # the committed copy, made when the run succeeds
    written: Path  # where the run writes it (its default_root_dir)


def value(v: Any) -> str:
    """A YAML value as jsonargparse reads it on the command line."""
    if isinstance(v, str):
        return v
    if v is None:
        return "null"
    return json.dumps(v)


def substitute(v: Any, names: dict[str, str]) -> Any:
    """`v` with "{seed}", "{variant}" and "{run}" (the run's directory) replaced in every string."""
    if isinstance(v, str):
        for name, text in names.items():
            v = v.replace("{" + name + "}", text)
        return v
    if isinstance(v, dict):
        return {k: substitute(x, names) for k, x in v.items()}
    if isinstance(v, list):
        return [substitute(x, names) for x in v]
    return v


def overrides(mapping: Any, where: str, names: dict[str, str]) -> list[str]:
    if mapping is None:
        return []
    if not isinstance(mapping, dict):
        raise ValueError(f"{where}: `set` must map dotted keys to values, got {mapping!r}")
    return [f"--{key}={value(substitute(v, names))}" for key, v in mapping.items()]


def as_list(v: Any) -> list[Any]:
    return [] if v is None else v if isinstance(v, list) else [v]


def plan(path: Path, seeds: list[int] | None = None, variants: list[str] | None = None) -> list[Run]:
    """The runs of the ablation at `path` (apps/<experiment>/ablations/<name>.yaml)."""
    try:
        spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such ablation file") from None
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not YAML ({' '.join(str(err).split())})") from None
    if not isinstance(spec, dict) or not isinstance(spec.get("variants"), dict) or "config" not in spec:
        raise ValueError(f"{path}: expected `config:` and a mapping `variants:` (see dlm-ablate --help)")
    if unknown := set(spec) - KEYS:
        raise ValueError(f"{path}: unknown keys {sorted(unknown)}; expected some of {sorted(KEYS)}")
    experiment = spec.get("experiment") or path.parent.parent.name  # apps/<experiment>/ablations/
    results = path.parent.parent / "results" / path.stem
    base = [a for c in as_list(spec["config"]) for a in ("--config", str(c))]
    all_seeds = [int(s) for s in as_list(spec.get("seeds", [0]))]
    chosen = list(spec["variants"]) if variants is None else variants
    if unknown := [v for v in chosen if v not in spec["variants"]]:
        raise ValueError(f"{path}: unknown variant {unknown[0]!r}; variants: {', '.join(spec['variants'])}")
    runs = []
    for seed in all_seeds if seeds is None else seeds:
        for name in chosen:
            body = spec["variants"][name] or {}
            if not isinstance(body, dict) or set(body) - VARIANT_KEYS:
                raise ValueError(
                    f"{path}: variant {name!r}: a mapping with keys among {sorted(VARIANT_KEYS)}"
                )
            command = body.get("command", "fit")
            if command not in COMMANDS:
                raise ValueError(
                    f"{path}: variant {name!r}: command must be one of {COMMANDS}, got {command!r}"
                )
            out = results / name / f"seed{seed}.json"
            run = f"runs/{experiment}/{path.stem}/{name}/seed{seed}"
            names = {"seed": str(seed), "variant": name, "run": run}
            args = [command, *base]
            args += [a for c in as_list(body.get("config")) for a in ("--config", str(c))]
            args += overrides(spec.get("set"), f"{path}: set", names)
            args += overrides(body.get("set"), f"{path}: variant {name!r}", names)
            args += [f"--seed_everything={seed}"]
            args += [f"--{key}={seed}" for key in as_list(spec.get("seed_keys"))]
            args += [
                f"--trainer.default_root_dir={run}",
                f"--results.experiment={experiment}",
                f"--results.variant={name}",
            ]
            runs.append(Run(name, seed, args, out, Path(run) / "results.json"))
    return runs


def dlm_script() -> str:
    """The `dlm` console script beside this interpreter (a venv's), else the one on PATH."""
    beside = Path(sys.executable).parent / "dlm"
    return str(beside) if beside.exists() else "dlm"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="dlm-ablate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("ablation", type=Path, help="apps/<experiment>/ablations/<name>.yaml")
    parser.add_argument("--seeds", type=int, nargs="+", help="only these seeds (default: the file's)")
    parser.add_argument("--variants", nargs="+", help="only these variants (default: all)")
    parser.add_argument("--force", action="store_true", help="rerun runs whose results file exists")
    parser.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    args = parser.parse_args(argv)
    try:
        runs = plan(args.ablation, args.seeds, args.variants)
    except (ValueError, FileNotFoundError) as err:
        sys.exit(f"dlm-ablate: error: {err}")
    dlm = dlm_script()
    for n, run in enumerate(runs, 1):
        command = [dlm, *run.args]
        label = f"[{n}/{len(runs)}] {run.variant} seed {run.seed}"
        if run.results.exists() and not args.force:
            print(f"{label}: {run.results} exists, skipped (--force reruns)", flush=True)
            continue
        print(f"{label}: {shlex.join(command)}", flush=True)
        if args.dry_run:
            continue
        run.written.unlink(missing_ok=True)
        status = subprocess.run(command).returncode
        if status != 0:
            sys.exit(f"dlm-ablate: error: {run.variant} seed {run.seed} failed (exit status {status})")
        if not run.written.exists():
            sys.exit(f"dlm-ablate: error: {run.variant} seed {run.seed} wrote no {run.written}")
        run.results.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(run.written, run.results)  # only a finished run reaches results/
    print("done; `dlm-report` regenerates the README tables from the results files", flush=True)


if __name__ == "__main__":
    main()
