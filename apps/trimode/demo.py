"""`make demo`: one model, three decoding modes, on 2 CPU cores.

    python apps/trimode/demo.py [--fresh] [--fast]

1. pretrain a tiny byte-level AR model on the embedded Python stdlib corpus (configs/demo-pretrain.yaml);
2. tri-mode continued pretraining from it (configs/demo.yaml);
3. test the tri-mode model in every mode on held-out prompts: the table (TPF, tok/s relative to AR,
   agreement with AR) and the acceptance-by-position plot come from TriModeModule's test stage.

Everything goes under runs/demo/ in the working directory. A stage whose exported model
(runs/demo/<stage>/model/dlm.json, written atomically at the end of fit) exists is reused; --fresh
deletes runs/demo/ first. --fast runs every stage as a Lightning fast_dev_run with a small decode
set (what CI runs). What a YAML cannot say lives here: the stage order and the reuse rule.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

CONFIGS = Path(__file__).resolve().parent / "configs"
OUT = Path("runs/demo")
STAGES = (
    ("pretrain the tiny AR model", CONFIGS / "demo-pretrain.yaml", OUT / "pretrain" / "model"),
    ("tri-mode continued pretraining", CONFIGS / "demo.yaml", OUT / "trimode" / "model"),
)
FAST = ["--trainer.fast_dev_run", "true"]
FAST_DECODE = [
    "--model.init_args.evaluation.init_args.prompts",
    "2",
    "--model.init_args.evaluation.init_args.max_new_tokens",
    "16",
]


def prepare_output(fresh: bool) -> None:
    """Create runs/demo (emptied first when `fresh`); exit with one line when it cannot be written."""
    try:
        if fresh and OUT.exists():
            shutil.rmtree(OUT)
        OUT.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=OUT):
            pass
    except OSError as err:
        sys.exit(
            f"demo: error: cannot write the demo's output directory {OUT.absolute()} "
            f"({err.strerror or err}); run it from a writable copy of the repository"
        )


def elapsed(seconds: float) -> str:
    return f"{int(seconds // 60)}m{seconds % 60:04.1f}s"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--fresh", action="store_true", help="delete runs/demo/ and run every stage")
    parser.add_argument("--fast", action="store_true", help="fast_dev_run every stage (CI)")
    args = parser.parse_args(argv)
    if argv is None:  # the stages get their arguments from this script, not from its command line
        sys.argv[1:] = []
    prepare_output(args.fresh)
    from dlm.training.cli import main as dlm

    extra = FAST if args.fast else []
    times = []
    total = len(STAGES) + 1
    for n, (what, config, model) in enumerate(STAGES, 1):
        start = time.perf_counter()
        if (model / "dlm.json").is_file():
            print(
                f"== stage {n}/{total}: {what}: reusing {model} (make demo FRESH=1 starts over)", flush=True
            )
        else:
            print(f"== stage {n}/{total}: {what} -> {model}", flush=True)
            dlm(["fit", "--config", str(config), *extra])
        times.append((what, time.perf_counter() - start))
    what, start = "test every decoding mode", time.perf_counter()
    print(f"== stage {total}/{total}: {what}", flush=True)
    trimode = STAGES[-1]
    test = ["test", "--config", str(trimode[1]), "--model.init_args.init_from", str(trimode[2])]
    dlm(test + (extra + FAST_DECODE if args.fast else []))
    times.append((what, time.perf_counter() - start))
    report = OUT / "trimode" / "decoding.md"
    print(f"\n{report.read_text()}" if report.is_file() else "")
    plot = OUT / "trimode" / "acceptance.png"
    if plot.is_file():
        print(f"acceptance-by-position plot: {plot}")
    print("\n".join(f"  {name}: {elapsed(t)}" for name, t in times))
    print(f"demo done in {elapsed(sum(t for _, t in times))}; outputs in {OUT}/")


if __name__ == "__main__":
    main()
