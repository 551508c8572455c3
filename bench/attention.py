"""Attention benchmark: the split backend against dense-mask SDPA on the [x_t ; x_0] training masks.

For every L (tokens per half) and block size B, and for BlockDiffusion and TriMode, times the forward
(no grad) and forward+backward of: dense-mask SDPA over 2L (the reference backend), split, and plain
causal SDPA over the same 2L tokens (is_causal, no mask: the cost of ordinary AR attention), plus flex
and xformers when a CUDA device (and xformers) is present. Methods run interleaved, round after
round, in one process, and the table reports medians and their ratios, so a shared or noisy machine
slows all of them alike. It also reports peak memory of one call: torch allocations on CPU (profiler
memory events), torch.cuda.max_memory_allocated on GPU, above what was allocated before the call
(q, k, v and the incoming gradient), and the part of it beyond the tensors every backend must return
(the output, and dq, dk, dv for forward+backward). Never asserts anything.

    .venv/bin/python bench/attention.py                        # the README table (batch 1, 8 heads, head_dim 64)
    .venv/bin/python bench/attention.py --lengths 256 --blocks 16 --repeats 3
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable

import torch
from torch.profiler import ProfilerActivity, profile

from dlm.attention import BlockDiffusion, Causal, TriMode, attend
from dlm.attention.backends import BACKENDS


def peak_mib(fn: Callable[[], None], device: torch.device) -> float:
    """Peak bytes torch allocates during fn() above what was live before it, in MiB."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - before) / 2**20
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    live = peak = 0
    for event in sorted(events, key=lambda e: e.start_ns()):
        live += event.nbytes()
        peak = max(peak, live)
    return peak / 2**20


def runner(method: str, mask, q, k, v, grad, backward: bool) -> Callable[[], None]:
    backend, call_mask = ("sdpa", Causal()) if method == "causal" else (method, mask)
    if method == "dense":
        backend = "sdpa"

    def run() -> None:
        if backward:
            out = attend(q, k, v, call_mask, backend=backend)
            out.backward(grad)
            q.grad = k.grad = v.grad = None
        else:
            with torch.no_grad():
                attend(q, k, v, call_mask, backend=backend)
        if q.device.type == "cuda":
            torch.cuda.synchronize()

    return run


def methods_here(device: torch.device) -> list[str]:
    names = ["causal", "dense", "split"]
    probe = torch.zeros(1, 1, 2, 8, device=device)
    for extra in ("flex", "xformers"):
        if device.type == "cuda" and not BACKENDS[extra].not_supported_reasons(
            probe, probe, probe, TriMode(1, 1), forced=True
        ):
            names.append(extra)
    return names


def measure(L: int, B: int, family, backward: bool, args, device: torch.device) -> dict:
    mask = family(B, L)
    g = torch.Generator(device=device).manual_seed(0)
    shape = (args.batch, args.heads, 2 * L, args.head_dim)
    q, k, v = (torch.randn(shape, generator=g, device=device, dtype=args.dtype) for _ in range(3))
    for x in (q, k, v):
        x.requires_grad_(backward)
    grad = torch.randn(shape, generator=g, device=device, dtype=args.dtype)
    names = methods_here(device)
    runs = {n: runner(n, mask, q, k, v, grad, backward) for n in names}
    times: dict[str, list[float]] = {n: [] for n in names}
    for run in runs.values():
        run()  # warm-up: caches (dense mask, split plan, BlockMask) and compilation
    for _ in range(args.repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    row = {n: statistics.median(t) * 1e3 for n, t in times.items()}
    returned = q.numel() * q.element_size() * (4 if backward else 1) / 2**20  # out (+ dq, dk, dv)
    for name in ("dense", "split"):
        row[f"{name}_mem"] = peak_mib(runs[name], device)
    row["returned_mem"] = returned
    return row


def table(args, device: torch.device) -> str:
    names = methods_here(device)
    extra = [n for n in names if n in ("flex", "xformers")]
    head = (
        "| L | B | mask | pass | causal 2L ms | dense ms | split ms | dense/split | dense/causal | split/causal "
        + "".join(f"| {n} ms | dense/{n} " for n in extra)
        + "| peak dense MiB | peak split MiB | split/dense peak | split/dense beyond outputs |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for L in args.lengths:
        for B in args.blocks:
            for family in (BlockDiffusion, TriMode):
                for backward in (False, True):
                    r = measure(L, B, family, backward, args, device)
                    beyond = (r["split_mem"] - r["returned_mem"]) / max(
                        r["dense_mem"] - r["returned_mem"], 1e-9
                    )
                    cells = [
                        str(L),
                        str(B),
                        family.__name__,
                        "fwd+bwd" if backward else "fwd",
                        f"{r['causal']:.1f}",
                        f"{r['dense']:.1f}",
                        f"{r['split']:.1f}",
                        f"{r['dense'] / r['split']:.2f}x",
                        f"{r['dense'] / r['causal']:.2f}",
                        f"{r['split'] / r['causal']:.2f}",
                    ]
                    for n in extra:
                        cells += [f"{r[n]:.1f}", f"{r['dense'] / r[n]:.2f}x"]
                    cells += [
                        f"{r['dense_mem']:.1f}",
                        f"{r['split_mem']:.1f}",
                        f"{r['split_mem'] / r['dense_mem']:.1%}",
                        f"{beyond:.0%}",
                    ]
                    lines.append("| " + " | ".join(cells) + " |")
                    print(lines[-1], flush=True)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--lengths", type=int, nargs="+", default=[256, 1024, 2048], help="L, tokens per half"
    )
    parser.add_argument("--blocks", type=int, nargs="+", default=[4, 16, 32], help="block sizes B")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--head-dim", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds per configuration (median)")
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    args.dtype = getattr(torch, args.dtype)
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    print(
        f"# {name}, {torch.get_num_threads()} threads, torch {torch.__version__}; batch {args.batch}, "
        f"{args.heads} heads, head_dim {args.head_dim}, {str(args.dtype).removeprefix('torch.')}; "
        f"median of {args.repeats} interleaved rounds"
    )
    if device.type != "cuda":
        print("# flex and xformers rows need a CUDA device: not measured here")
    print(table(args, device))


if __name__ == "__main__":
    main()
