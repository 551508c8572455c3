"""HumanEval scoring: canonical solutions score 1.0, broken ones 0.0; the statistics against brute
force; stop sequences; bad samples files."""

import itertools
import json
import math
import random

import pytest

from dlm.decoding.tasks.cli import main
from dlm.decoding.tasks.humaneval import (
    STOP_SEQUENCES,
    StopText,
    cut,
    mcnemar,
    pass_at_k,
    read_problems,
    read_samples,
    score,
    wilson,
)


@pytest.fixture(scope="module")
def problems():
    return read_problems()


def write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.slow
def test_canonical_solutions_score_one_on_all_164(problems, tmp_path, capsys):
    samples = [{"task_id": t, "completion": p["canonical_solution"]} for t, p in problems.items()]
    assert main(["humaneval", "--score", str(write(tmp_path / "s.jsonl", samples)), "--json"]) == 0
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert len(problems) == 164
    assert record["decoders"]["s.jsonl"]["pass@1"] == 1.0 and record["decoders"]["s.jsonl"]["solved"] == 164


def test_broken_completions_score_zero(problems):
    tasks = list(problems)[:12]
    broken = [{"task_id": t, "completion": "    return None\n"} for t in tasks]
    summary = score(problems, broken).summary()
    assert summary["pass@1"] == 0.0 and summary["problems"] == 12
    assert summary["ci95"][0] == 0.0 and 0.2 < summary["ci95"][1] < 0.3


def test_a_hanging_completion_times_out_and_the_run_goes_on(problems, tmp_path, capsys):
    first, second = list(problems)[:2]
    rows = [
        {"task_id": first, "completion": "    while True:\n        pass\n"},
        {"task_id": second, "completion": problems[second]["canonical_solution"]},
    ]
    args = ["humaneval", "--score", str(write(tmp_path / "s.jsonl", rows)), "--timeout", "3", "--json"]
    assert main(args) == 0
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["decoders"]["s.jsonl"]
    assert record["pass@1"] == 0.5 and record["timed_out"] == 1


@pytest.mark.parametrize(
    "row, message",
    [
        ({"task_id": "HumanEval/999", "completion": "x"}, "unknown task_id 'HumanEval/999'"),
        ({"task_id": "HumanEval/0"}, "HumanEval/0 has no 'completion' string"),
        ({"completion": "x"}, "unknown task_id None"),
    ],
)
def test_bad_samples_are_one_clear_error(problems, tmp_path, capsys, row, message):
    path = write(tmp_path / "s.jsonl", [{"task_id": "HumanEval/1", "completion": "x"}, row])
    with pytest.raises(ValueError, match=f"s.jsonl:2: {message}"):
        read_samples(path, problems)
    assert main(["humaneval", "--score", str(path)]) == 2
    assert capsys.readouterr().err.startswith(f"dlm-eval: error: {path}:2:")


def test_pass_at_k_equals_the_fraction_of_k_subsets_with_a_correct_sample():
    rng = random.Random(0)
    for n, c, k in [(5, 0, 1), (5, 2, 1), (6, 3, 2), (7, 1, 3), (4, 4, 2), (8, 2, 8)]:
        outcomes = [True] * c + [False] * (n - c)
        rng.shuffle(outcomes)
        subsets = list(itertools.combinations(outcomes, k))
        assert pass_at_k(n, c, k) == pytest.approx(sum(any(s) for s in subsets) / len(subsets))


def test_wilson_interval_covers_at_its_level():
    """Known values, and the interval inverts the score test: p inside iff |k - np| <= z sd."""
    lo, hi = wilson(0, 164)
    assert lo == 0.0 and hi == pytest.approx(0.02289, abs=1e-4)
    lo, hi = wilson(82, 164)
    assert (lo + hi) / 2 == pytest.approx(0.5) and hi - lo == pytest.approx(0.1513, abs=1e-4)
    for k, p in [(10, 0.03), (10, 0.1), (40, 0.3), (40, 0.17)]:
        lo, hi = wilson(k, 164)
        assert (lo <= p <= hi) == (abs(k - 164 * p) <= 1.959964 * math.sqrt(164 * p * (1 - p)))


def test_mcnemar_counts_and_exact_p():
    a = {f"t{i}": v for i, v in enumerate([1, 1, 0, 0, 1, 0, 1, 1])}
    b = {f"t{i}": v for i, v in enumerate([1, 0, 0, 1, 0, 0, 0, 0])}
    result = mcnemar({k: bool(v) for k, v in a.items()}, {k: bool(v) for k, v in b.items()})
    assert (result["both"], result["only_this"], result["only_baseline"], result["neither"]) == (1, 4, 1, 2)
    assert result["p"] == pytest.approx(2 * (1 + 5) / 32)  # two-sided exact binomial, m = 5
    assert mcnemar({"t": True}, {"t": True})["p"] == 1.0


def test_stop_text_and_cut_follow_humaneval_stop_sequences():
    decode = "".join
    stop = StopText(decode, STOP_SEQUENCES)
    tokens = list("    return x\n\n") + ["\nd", "ef", " g"]
    hits = [stop(tokens[: i + 1]) for i in range(len(tokens))]
    assert hits.index(True) == len(tokens) - 2  # the token that completes "\ndef"
    assert cut(decode(tokens), STOP_SEQUENCES) == "    return x\n\n"
    assert cut("    return 1\n# note\nif x:", STOP_SEQUENCES) == "    return 1"
    assert not stop(list("    if x:\n        print(y)"))  # indented: not a stop


def test_the_problems_file_must_hold_problems(tmp_path):
    bad = tmp_path / "p.jsonl"
    bad.write_text('{"task_id": "x", "prompt": "def f():"}\n')
    with pytest.raises(ValueError, match="p.jsonl:1: expected a HumanEval problem with the fields"):
        read_problems(bad)
