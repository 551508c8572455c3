"""Compiled decoding against eager decoding and against transformers, on one HF checkpoint.

    python bench/dlm_vs_transformers.py --checkpoint checkpoints/SmolLM2-135M-Instruct \
        --adapter apps/trimode/adapters/smollm2-135m --results bench/results/dlm_vs_transformers

1. AR: tok/s of dlm eager, dlm compiled (dlm.core.compiled), transformers' default `generate` and
   transformers with its static cache and torch.compile (the fair anchor), for each --ar
   dtype:batch; the first --num-prompts HumanEval prompts (raw), exactly --max-new-tokens greedy
   tokens (EOS does not stop), token agreement with transformers' default.
2. Speculative decoders (--decoders; the checkpoint with --adapter, each --dtypes, batch 1): tok/s
   with compile off and on, TPF, agreement with AR, and the wall-clock speedup over AR with the same
   compile setting (each decoder's runs follow AR's; not interleaved).
3. One cached forward of k + 1 tokens against one of 1 token after a 256-token prefix (batch 1,
   each --dtypes), compile off and on: the ratio a speculative step pays for its width.

Every engine runs once to warm up (that run compiles; its time is reported as compile seconds),
then --repeats timed runs, engines interleaved so they share the machine's load; the fastest
counts. The bandwidth limit: weight bytes a token reads (parameters x dtype size, a tied head once)
over the memory bandwidth a large tensor copy reaches here. Nothing is asserted: read the ratios.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from timing import best_ms  # bench/timing.py: the scripts run from bench/

from dlm.attention import Causal, Verify
from dlm.core import load_model
from dlm.core.adapter import load_adapter
from dlm.core.checks import DTYPES
from dlm.core.compiled import compiled_forward
from dlm.core.results import record, write_results
from dlm.core.stats import DecodeStats, agreement
from dlm.decoding import ARDecoder, FusedSelfSpeculativeDecoder, SelfSpeculativeDecoder
from dlm.decoding.tasks.humaneval import read_problems


def bandwidth_gb_s(megabytes: int = 512) -> float:
    """Read + write bytes per second of the best of five copies of a large tensor (after one)."""
    src = torch.ones(megabytes * 2**20 // 4)
    dst = torch.empty_like(src)
    return 2 * src.numel() * 4 / (best_ms(lambda: dst.copy_(src), 5) / 1e3) / 1e9


def weight_bytes(model: torch.nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in {id(p): p for p in model.parameters()}.values())


def dlm_engine(model, compile: bool):
    decoder = ARDecoder(compile=compile)

    def run(prompts, new, batch):
        out, seconds, compiling = [], 0.0, 0.0
        for s in range(0, len(prompts), batch):
            tokens, stats = decoder.generate(model, prompts[s : s + batch], new)
            out += tokens
            seconds += stats.seconds
            compiling += stats.compile_seconds
        return out, seconds, compiling

    return run


def hf_engine(model, pad: int, static: bool):
    from transformers import CompileConfig

    config = None
    if static:
        config = CompileConfig(dynamic=False)
        config._compile_all_devices = True  # transformers compiles on accelerators only by default

    @torch.no_grad()
    def run(prompts, new, batch):
        out, seconds, compiling = [], 0.0, 0.0
        for s in range(0, len(prompts), batch):
            chunk = prompts[s : s + batch]
            width = max(len(p) for p in chunk)
            ids = torch.tensor([[pad] * (width - len(p)) + p for p in chunk])
            mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in chunk])
            extra = {"cache_implementation": "static", "compile_config": config} if static else {}
            start = time.perf_counter()
            result = model.generate(
                input_ids=ids,
                attention_mask=mask,
                do_sample=False,
                max_new_tokens=new,
                min_new_tokens=new,
                pad_token_id=pad,
                **extra,
            )
            seconds += time.perf_counter() - start
            out += result[:, width:].tolist()
        return out, seconds, compiling

    return run


def timed(engines, prompts, new, batch, repeats):
    """Per engine: (tokens, best seconds, warm-up seconds beyond the best: the compile time)."""
    warm = {name: run(prompts, new, batch) for name, run in engines.items()}
    best = {name: float("inf") for name in engines}
    for _ in range(repeats):
        for name, run in engines.items():
            best[name] = min(best[name], run(prompts, new, batch)[1])
    return {
        name: (warm[name][0], best[name], max(0.0, warm[name][1] + warm[name][2] - best[name]))
        for name in engines
    }


def decode(decoder, model, prompts, new):
    """Batch-1 decodes of every prompt after a warm-up on the first (which compiles)."""
    compiling = decoder.generate(model, prompts[:1], new)[1].compile_seconds
    tokens, stats = [], DecodeStats()
    for prompt in prompts:
        out, one = decoder.generate(model, [prompt], new)
        tokens, stats = tokens + out, stats.merged(one)
    return tokens, stats, compiling + stats.compile_seconds


@torch.no_grad()
def forward_ms(model, width: int, compile: bool, repeats: int) -> float:
    """Best time of one cached forward of `width` tokens after a 256-token prefix, batch 1."""
    cache = model.new_cache(1, 512)
    prefix = torch.arange(256).unsqueeze(0) % model.config.vocab_size
    model(prefix, torch.arange(256).unsqueeze(0), Causal(), cache=cache)
    tokens = torch.arange(width).unsqueeze(0) + 1
    positions = torch.arange(width).unsqueeze(0) + 256
    mask = Verify((256,), width)
    if compile:
        forward = compiled_forward(model)
        step = lambda: forward(tokens, positions, mask, cache, False, None)  # noqa: E731
    else:
        step = lambda: model(tokens, positions, mask, cache=cache, commit=False)  # noqa: E731
    return best_ms(step, repeats)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="an HF checkpoint directory (config.json)")
    p.add_argument("--adapter", help="a draft adapter for the speculative decoders (part 2)")
    p.add_argument("--num-prompts", type=int, default=4)
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--ar", nargs="+", default=["float32:1", "bfloat16:1", "float32:8"], help="dtype:batch")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument(
        "--decoders", nargs="*", default=["self-spec", "fused", "quadratic"], help="part 2, beside AR"
    )
    p.add_argument(
        "--dtypes", nargs="+", default=["float32", "bfloat16"], choices=sorted(DTYPES), help="parts 2 and 3"
    )
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--results", help="a folder for the results files (dlm.core.results), one per table row")
    args = p.parse_args(argv)
    started = time.time()
    if args.threads:
        torch.set_num_threads(args.threads)
    from transformers import AutoModelForCausalLM

    # Each dtype loads the checkpoint afresh: casting float32 -> bfloat16 -> float32 in place would
    # leave the later float32 runs on rounded weights.
    def ours(dtype: torch.dtype, adapter: str | None = None):
        model = load_model(args.checkpoint)[0].eval()
        if adapter:
            load_adapter(model, adapter)
        return model.to(dtype)

    def theirs(dtype: torch.dtype):
        hf = AutoModelForCausalLM.from_pretrained(args.checkpoint, dtype=dtype).eval()
        hf.generation_config.eos_token_id = None  # every engine generates exactly max_new_tokens
        return hf

    tok = load_model(args.checkpoint)[1]
    problems = list(read_problems().values())[: args.num_prompts]
    prompts = [tok.encode(problem["prompt"]) for problem in problems]
    new = args.max_new_tokens
    bandwidth = bandwidth_gb_s()
    print(f"memory bandwidth (copy): {bandwidth:.1f} GB/s", flush=True)

    def save(where: str, variant: str, metrics: dict, dtype: str) -> None:
        """One results file per table row: DIR/<where>/<variant>.json."""
        if args.results:
            fields = {"experiment": "bench", "variant": variant, "seed": 0, "dtype": dtype}
            path = Path(args.results) / where / f"{variant}.json"
            write_results(path, record(metrics, config=vars(args), started=started, **fields))

    print("| dtype | batch | engine | tok/s | vs transformers | compile s | agreement | % of limit |")
    print("|---|---:|---|---:|---:|---:|---:|---:|")
    for spec in args.ar:
        name, batch = spec.split(":")
        dtype, batch = DTYPES[name], int(batch)
        model, hf = ours(dtype), theirs(dtype)
        limit = bandwidth * 1e9 / weight_bytes(model)
        engines = {
            "dlm": dlm_engine(model, False),
            "dlm-compiled": dlm_engine(model, True),
            "transformers": hf_engine(hf, tok.pad_id, False),
            "transformers-static-compiled": hf_engine(hf, tok.pad_id, True),
        }
        runs = timed(engines, prompts, new, batch, args.repeats)
        base, metrics = runs["transformers"], {"bandwidth_gb_s": bandwidth, "limit_tok_s": limit}
        for engine, (tokens, seconds, compiling) in runs.items():
            rate = len(prompts) * new / seconds
            metrics |= {
                f"{engine}/tok_s": rate,
                f"{engine}/vs_transformers": base[1] / seconds,
                f"{engine}/compile_s": compiling,
                f"{engine}/agreement": agreement(tokens, base[0]),
                f"{engine}/of_limit": rate / batch / limit,
            }
            print(
                f"| {name} | {batch} | {engine} | {rate:.1f} | {base[1] / seconds:.2f}x | {compiling:.0f} | "
                f"{agreement(tokens, base[0]):.3f} | {100 * rate / batch / limit:.0f}% |",
                flush=True,
            )
        save("ar", f"{name}-b{batch}", metrics, name)
    del hf

    if args.adapter:
        every = {
            "ar": ARDecoder,
            "self-spec": SelfSpeculativeDecoder,
            "fused": FusedSelfSpeculativeDecoder,
            "quadratic": lambda **c: FusedSelfSpeculativeDecoder(quadratic=True, **c),
        }
        decoders = {name: every[name] for name in ["ar", *args.decoders]}
        print("\n| dtype | decoder | compile | tok/s | TPF | vs AR | compile s | agreement with AR |")
        print("|---|---|---|---:|---:|---:|---:|---:|")
        for dtype in args.dtypes:
            model = ours(DTYPES[dtype], args.adapter)
            reference, ar_rate = None, {}
            for name, make in decoders.items():
                metrics = {}
                for compile in (False, True):
                    key = "compiled" if compile else "eager"
                    tokens, stats, compiling = decode(make(compile=compile), model, prompts, new)
                    reference = tokens if reference is None else reference
                    ar_rate.setdefault(key, stats.tokens_per_second)
                    vs_ar = stats.tokens_per_second / ar_rate[key]
                    metrics |= {
                        f"{key}/tok_s": stats.tokens_per_second,
                        f"{key}/tpf": stats.tpf,
                        f"{key}/vs_ar": vs_ar,
                        f"{key}/compile_s": compiling,
                        f"{key}/agreement": agreement(tokens, reference),
                    }
                    print(
                        f"| {dtype} | {name} | {'on' if compile else 'off'} | {stats.tokens_per_second:.1f} | "
                        f"{stats.tpf:.2f} | {vs_ar:.2f}x | {compiling:.0f} | {agreement(tokens, reference):.3f} |",
                        flush=True,
                    )
                metrics["compiled/vs_eager"] = metrics["compiled/tok_s"] / metrics["eager/tok_s"]
                save("decoders", f"{dtype}-{name}", metrics, dtype)

    k = 7
    print(f"\n| dtype | forward (batch 1, 256-token prefix) | compile | ms | {k + 1} tokens / 1 token |")
    print("|---|---|---|---:|---:|")
    for dtype in args.dtypes:
        model = ours(DTYPES[dtype])
        metrics = {}
        for compile in (False, True):
            one, wide = forward_ms(model, 1, compile, 20), forward_ms(model, k + 1, compile, 20)
            tag = "compiled" if compile else "eager"
            metrics |= {f"{tag}/ms_1": one, f"{tag}/ms_wide": wide, f"{tag}/ratio": wide / one}
            print(
                f"| {dtype} | 1 and {k + 1} tokens | {'on' if compile else 'off'} | {one:.1f} / {wide:.1f} | "
                f"{wide / one:.2f}x |",
                flush=True,
            )
        save("forward", f"{dtype}-k{k}", metrics, dtype)


if __name__ == "__main__":
    main()
