"""What a matmul costs for 8 rows against 1 on this CPU: the cost of a speculative forward's width.

    python bench/gemm_rows.py --threads 1 --results bench/results/gemm_rows     # then dlm-report

SmolLM2-135M's weight shapes (the tied LM head 49152 x 576, the MLP's 1536 x 576, attention's 576 x
576), x (rows, 576) times the weight: as nn.Linear does it (`x @ W.T`, W stored (out, in)), with the
weight stored (in, out) (`x @ W`), and in bfloat16 as nn.Linear does it. Best of --repeats after a
warm-up, per shape and layout, rows 1 and 8. One results file per shape; nothing is asserted.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from timing import best_ms  # bench/timing.py: the scripts run from bench/

from dlm.core.results import record, write_results

SHAPES = {"head": (49152, 576), "mlp": (1536, 576), "attention": (576, 576)}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--results", help="a folder for the results files, one per shape")
    args = p.parse_args(argv)
    started = time.time()
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    print("| shape | layout | 1 row ms | 8 rows ms | 8 / 1 |")
    print("|---|---|---:|---:|---:|")
    for name, (out, inner) in SHAPES.items():
        weight = torch.randn(out, inner, generator=g)
        layouts = {  # the stored weight, and whether x multiplies its transpose (nn.Linear's way)
            "fp32_linear": (weight, True),
            "fp32_in_out": (weight.T.contiguous(), False),
            "bf16_linear": (weight.bfloat16(), True),
        }
        metrics = {}
        for layout, (stored, transposed) in layouts.items():
            w = stored.T if transposed else stored
            ms = {}
            for rows in (1, 8):
                x = torch.randn(rows, inner, generator=g).to(stored.dtype)
                ms[rows] = best_ms(lambda x=x, w=w: x @ w, args.repeats)
            metrics |= {f"{layout}/ms_1": ms[1], f"{layout}/ms_8": ms[8], f"{layout}/ratio": ms[8] / ms[1]}
            print(f"| {name} | {layout} | {ms[1]:.2f} | {ms[8]:.2f} | {ms[8] / ms[1]:.2f}x |", flush=True)
        if args.results:
            path = Path(args.results) / f"{name}.json"
            fields = {"experiment": "bench", "variant": name, "seed": 0, "dtype": "float32"}
            write_results(path, record(metrics, config=vars(args), started=started, **fields))


if __name__ == "__main__":
    main()
