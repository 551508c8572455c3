"""Tri-mode ablation: does joint training keep AR quality, what does each block size buy, what does a
tri-mode step cost?

    python apps/trimode/ablation.py                          # from runs/demo/pretrain/model (make demo first)
    python apps/trimode/ablation.py --init CKPT --steps 200 --block-sizes 4 8 16 --threads 2
    python apps/trimode/ablation.py --init checkpoints/SmolLM2-135M-Instruct --only-step-times --bf16 \
        --batch-size 4 --repeats 3      # the step-time ratio on the real checkpoint (apps/trimode/README.md)

From one AR checkpoint, at equal steps, equal data order and equal optimizer settings:
- the pure AR model continued (ARLanguageModel) and a tri-mode model per block size (TriModeModule);
- the AR CE of each on held-out text (a causal forward over the test split): the tri-mode model's
  relative to the pure AR model's (goal: within 5%);
- per block size B, on held-out prompts: TPF, tau, tok/s relative to AR and agreement with AR greedy
  of self-speculation (k = B - 1; plain and fused) and block diffusion;
- the training-step time of an AR step and a tri-mode step (B = 8) side by side on the same batches,
  with the attention backend dispatch picks and with the dense sdpa pass forced (goal: <= 2.1x).
Timings are CPU time of this process when --threads is 1 (immune to other jobs on the machine),
wall time otherwise; read ratios. Nothing is asserted. Prints markdown tables.
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import sys
import time
from pathlib import Path

import lightning.pytorch as pl
import torch

from dlm.attention import Causal
from dlm.core.losses import AutoregressiveLoss, HybridLoss
from dlm.decoding import (
    ARDecoder,
    BlockDiffusionDecoder,
    CausalCommit,
    FusedSelfSpeculativeDecoder,
    SelfSpeculativeDecoder,
)
from dlm.decoding.evaluation import decode_interleaved, decode_metrics, decode_table, distinct_ngrams
from dlm.training import Architecture, ARLanguageModel, Optimization, PackedTextDataModule, TriModeModule
from dlm.training.patterns import positions


def data_module(args: argparse.Namespace, tokenizer) -> PackedTextDataModule:
    dm = PackedTextDataModule(
        "stdlib-code", seq_len=args.seq_len, batch_size=args.batch_size, tokenizer=tokenizer
    )
    dm.prepare_data()
    dm.setup("fit")
    dm.setup("test")
    return dm


def train(module: pl.LightningModule, dm: PackedTextDataModule, steps: int, label: str) -> float:
    """Fit for `steps` steps (seed 0: the same data order for every variant); seconds taken."""
    pl.seed_everything(0, verbose=False)
    trainer = pl.Trainer(
        max_steps=steps,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        limit_val_batches=0,
        gradient_clip_val=1.0,
        enable_progress_bar=sys.stderr.isatty(),
    )
    start = time.perf_counter()
    trainer.fit(module, datamodule=dm)
    seconds = time.perf_counter() - start
    print(f"trained {label}: {steps} steps in {seconds:.0f} s", flush=True)
    return seconds


@torch.no_grad()
def ar_ce(model, dm: PackedTextDataModule, batches: int) -> float:
    """Mean next-token CE of a causal forward over the first `batches` test batches."""
    model.eval()
    loss, total = AutoregressiveLoss(), []
    for n, batch in enumerate(dm.test_dataloader()):
        if n == batches:
            break
        tokens = batch["tokens"]
        total.append(loss(model(tokens, positions(*tokens.shape, tokens.device), Causal()), tokens).item())
    return sum(total) / len(total)


def decoders(block: int) -> dict:
    return {
        "ar": ARDecoder(),
        f"diffusion B={block}": BlockDiffusionDecoder(block_size=block, threshold=0.9, clean=CausalCommit()),
        f"self_spec k={block - 1}": SelfSpeculativeDecoder(k=block - 1),
        f"self_spec_fused k={block - 1}": FusedSelfSpeculativeDecoder(k=block - 1),
    }


def clock(threads: int) -> float:
    return time.process_time() if threads == 1 else time.perf_counter()


def step_times(init: str, dm: PackedTextDataModule, args: argparse.Namespace) -> dict[str, float]:
    """Best time of a full training step (forward, backward, AdamW) per variant, interleaved; with
    --bf16 under CPU bf16 autocast over fp32 weights (what precision bf16-mixed runs)."""
    opt = Optimization(lr=1e-4, warmup_steps=1)
    ar = ARLanguageModel(init_from=init, optimization=opt)
    tri = TriModeModule(init_from=init, block_size=8, optimization=opt)
    batches = []
    for n, batch in enumerate(dm.train_dataloader()):
        if n == args.repeats:
            break
        batches.append(batch)

    def run(module, loss_of, backend=None):
        optimizer = torch.optim.AdamW(module.parameters(), lr=1e-4)

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
        "AR step": run(ar, lambda m, b: m.step(b)),
        "tri-mode step (dispatch)": run(tri, lambda m, b: m.objective(b, 0)["loss"]),
        "tri-mode step (sdpa forced)": run(tri, lambda m, b: m.objective(b, 0)["loss"], "sdpa"),
    }
    for step in variants.values():  # warm-up
        step(batches[0])
    best = {name: float("inf") for name in variants}
    for batch in batches:
        for name, step in variants.items():
            start = clock(args.threads)
            step(batch)
            best[name] = min(best[name], clock(args.threads) - start)
    return best


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--init", default="runs/demo/pretrain/model", help="the AR checkpoint every variant starts from"
    )
    p.add_argument("--steps", type=int, default=200, help="training steps of every variant")
    p.add_argument("--block-sizes", type=int, nargs="+", default=[4, 8, 16])
    p.add_argument(
        "--diffusion-weights", type=float, nargs="+", default=[1.0], help="HybridLoss weights a (AR weight 1)"
    )
    p.add_argument("--token-shift", action="store_true", help="train the tri-mode variants with token shift")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--eval-batches", type=int, default=8, help="test batches of the AR CE")
    p.add_argument("--prompts", type=int, default=8)
    p.add_argument("--prompt-tokens", type=int, default=64)
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--decode-batch", type=int, default=1, help="prompts decoded together")
    p.add_argument("--repeats", type=int, default=5, help="timed steps per variant (the fastest counts)")
    p.add_argument("--skip-step-times", action="store_true")
    p.add_argument("--only-step-times", action="store_true", help="time the steps, train nothing")
    p.add_argument("--bf16", action="store_true", help="time the steps under bf16 autocast (bf16-mixed)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = p.parse_args(argv)
    init = Path(args.init)
    if not any((init / name).is_file() for name in ("dlm.json", "config.json")) and not init.is_file():
        sys.exit(
            f"apps/trimode/ablation.py: error: no AR checkpoint at {args.init}; run `make demo` first or pass --init"
        )
    torch.set_num_threads(args.threads)
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch threads {args.threads}"
    )

    opt = Optimization(lr=args.lr, warmup_steps=10)
    pure = ARLanguageModel(init_from=args.init, optimization=opt)
    dm = data_module(args, pure.tokenizer)
    prompts = [
        s["tokens"][: args.prompt_tokens].tolist()
        for s in (dm.datasets["test"][i] for i in range(args.prompts))
    ]

    times = {} if args.skip_step_times else step_times(args.init, dm, args)
    if times:
        unit = "CPU ms" if args.threads == 1 else "ms"
        print(
            f"\n### Training step, seq_len {args.seq_len}, batch {args.batch_size}, "
            f"{'bf16 autocast' if args.bf16 else 'float32'} ({unit}, best of {args.repeats})\n"
        )
        print("| step | time | ratio to AR |\n|---|---:|---:|")
        for name, t in times.items():
            print(f"| {name} | {t * 1e3:.0f} | {t / times['AR step']:.2f}x |")
    if args.only_step_times:
        return

    initial_ce = ar_ce(ARLanguageModel(init_from=args.init).model, dm, args.eval_batches)
    train(pure, dm, args.steps, "pure AR")
    pure_ce = ar_ce(pure.model, dm, args.eval_batches)
    rows, tables = [], []
    for block, weight in itertools.product(args.block_sizes, args.diffusion_weights):
        label = f"tri-mode B={block}, a={weight:g}{', token shift' if args.token_shift else ''}"
        loss = HybridLoss(diffusion_weight=weight, ar_weight=1.0)
        module = TriModeModule(
            init_from=args.init,
            architecture=Architecture(token_shift=args.token_shift),
            block_size=block,
            loss=loss,
            optimization=opt,
        )
        train(module, dm, args.steps, label)
        ce = ar_ce(module.model, dm, args.eval_batches)
        rows.append(f"| {label} | {ce:.4f} | {(ce / pure_ce - 1) * 100:+.1f}% |")
        model = module.model.eval()
        chosen = decoders(block)
        decode_interleaved(chosen, model, prompts[:1], 4)  # warm-up
        runs = decode_interleaved(chosen, model, prompts, args.max_new_tokens, args.decode_batch)
        metrics = decode_metrics(runs, prompts, model, baseline="ar")
        for name, (outputs, _) in runs.items():
            metrics[f"{name}/distinct4"] = distinct_ngrams(outputs, 4)
        tables.append(f"\n#### B = {block}, a = {weight:g}\n\n{decode_table(list(runs), metrics, 'ar')}")

    print(f"\n### Held-out AR CE after {args.steps} more steps from {args.init} (nats per token)\n")
    print("| model | AR CE | vs pure AR |\n|---|---:|---:|")
    print(f"| initial checkpoint | {initial_ce:.4f} | {(initial_ce / pure_ce - 1) * 100:+.1f}% |")
    print(f"| pure AR | {pure_ce:.4f} | - |")
    print("\n".join(rows))
    print(
        f"\n### Decoding by block size ({len(prompts)} held-out prompts of {args.prompt_tokens} tokens, "
        f"{args.max_new_tokens} new tokens, {args.decode_batch} at a time, greedy)"
    )
    print("\n".join(tables))


if __name__ == "__main__":
    main()
