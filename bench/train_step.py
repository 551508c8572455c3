"""What a tri-mode training step costs next to an AR step: forward, backward and AdamW of each on the
same batches, interleaved (a shared machine's load falls on both alike), with the attention backend
dispatch picks, with the dense sdpa pass forced, and with a draft adapter on the frozen base (the
clean half a no-grad prefix; the issue's goal: at most 1.3x an AR step). Ratios, not absolute times; nothing is asserted.
One thread: CPU time of this process (immune to other jobs); more threads: wall time.

    OMP_NUM_THREADS=1 python bench/train_step.py --init runs/pretrain-tiny/model \
        --results bench/results/train_step/tiny/seed0.json      # then dlm-report
    OMP_NUM_THREADS=1 python bench/train_step.py --init checkpoints/SmolLM2-135M-Instruct --bf16 \
        --batch-size 4 --repeats 3 --results bench/results/train_step/smollm2-135m-bf16.json

--results writes a results file (dlm.core.results: the times, the command, commit and machine;
--variant and --seed name its row and repeat); bench/results/tables.yaml makes README tables of them.
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from dlm.core.adapter import DraftAdapter
from dlm.core.results import record, write_results
from dlm.training import ARLanguageModel, Optimization, PackedTextDataModule, TriModeModule


def clock(threads: int) -> float:
    return time.process_time() if threads == 1 else time.perf_counter()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--init", default="runs/pretrain-tiny/model", help="the AR checkpoint both start from")
    p.add_argument("--block-size", type=int, default=8, help="the tri-mode block")
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--repeats", type=int, default=5, help="timed steps per variant (the fastest counts)")
    p.add_argument("--bf16", action="store_true", help="under CPU bf16 autocast (what bf16-mixed runs)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--results", help="write a results file here")
    p.add_argument("--variant", default="tiny", help="the results file's variant (its row in a table)")
    p.add_argument(
        "--seed", type=int, default=0, help="the results file's seed (a repeat of the measurement)"
    )
    args = p.parse_args(argv)
    started = time.time()
    torch.set_num_threads(args.threads)
    opt = Optimization(lr=1e-4, warmup_steps=1)
    ar = ARLanguageModel(init_from=args.init, optimization=opt)
    tri = TriModeModule(init_from=args.init, block_size=args.block_size, optimization=opt)
    adapted = TriModeModule(
        init_from=args.init, block_size=args.block_size, optimization=opt, adapter=DraftAdapter()
    )
    dm = PackedTextDataModule(
        "stdlib-code", seq_len=args.seq_len, batch_size=args.batch_size, tokenizer=ar.tokenizer
    )
    dm.prepare_data()
    dm.setup("fit")
    batches = [b for _, b in zip(range(args.repeats), dm.train_dataloader(), strict=False)]

    def run(module, loss_of, backend=None):
        optimizer = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=1e-4)

        def step(batch):
            if backend:
                os.environ["DLM_ATTENTION_BACKEND"] = backend
            try:
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
                    loss = loss_of(module, batch)
            finally:
                os.environ.pop("DLM_ATTENTION_BACKEND", None)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

        return step

    variants = {
        "ar": run(ar, lambda m, b: m.step(b)),
        "trimode": run(tri, lambda m, b: m.objective(b, 0)["loss"]),
        "trimode_sdpa": run(tri, lambda m, b: m.objective(b, 0)["loss"], "sdpa"),
        "trimode_adapter": run(adapted, lambda m, b: m.objective(b, 0)["loss"]),
    }
    for step in variants.values():  # warm-up
        step(batches[0])
    best = {name: float("inf") for name in variants}
    for batch in batches:
        for name, step in variants.items():
            start = clock(args.threads)
            step(batch)
            best[name] = min(best[name], clock(args.threads) - start)
    unit = "CPU ms" if args.threads == 1 else "ms"
    print(
        f"| step (seq {args.seq_len}, batch {args.batch_size}, best of {args.repeats}) | {unit} | ratio to AR |"
    )
    print("|---|---:|---:|")
    for name, t in best.items():
        print(f"| {name} | {t * 1e3:.0f} | {t / best['ar']:.2f}x |")
    if args.results:
        metrics = {f"step_ms/{n}": t * 1e3 for n, t in best.items()}
        metrics |= {f"ratio/{n}": t / best["ar"] for n, t in best.items()}
        dtype = "bfloat16-autocast" if args.bf16 else "float32"
        fields = {"experiment": "bench", "variant": args.variant, "seed": args.seed, "dtype": dtype}
        write_results(args.results, record(metrics, config=vars(args), started=started, **fields))


if __name__ == "__main__":
    main()
