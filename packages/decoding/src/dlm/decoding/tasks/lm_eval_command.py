"""`dlm-eval lm-eval`: lm-eval tasks through the dlm model class with one decoder (lm-eval owns its
requests; the metrics and report writer are the Evaluation's), optionally on local data offline."""

from __future__ import annotations

import json as jsonlib
import tempfile
from pathlib import Path
from typing import Any

from dlm.core.checks import positive
from dlm.decoding.metrics import decode_table
from dlm.decoding.options import Loaded


def lm_eval(
    loaded: Loaded,
    short: dict[str, Any],
    tasks: list[str],
    include_path: str | None = None,
    data: str | None = None,
    data_field: str = "text",
    limit: int | None = None,
    num_fewshot: int | None = None,
    max_new_tokens: int = 256,
    batch_size: int = 8,
    json: bool = False,
    output: str | None = None,
) -> dict[str, Any]:
    """lm-eval tasks through the dlm model class: `loaded`'s model and one decoder (--decoder NAME
    and the settings in `short`, as short_decoders takes them).

    Args:
        tasks: lm-eval task names.
        include_path: A directory of task YAMLs of your own.
        data: Run the one task given on local data instead of its hub dataset: a JSONL file with the
            fields the task reads, or an embedded corpus (stdlib-code, shakespeare) whose held-out
            documents become its test split, each as `data_field`. The task stays lm-eval's own
            (prompts, metrics, processing), read offline.
        data_field: The field an embedded corpus's documents go into (wikitext reads "page").
        limit: Documents per task.
        num_fewshot: Few-shot examples per prompt.
        max_new_tokens: Tokens generated per request unless the task says (max_gen_toks).
        batch_size: Requests decoded together.
        json: End with one JSON line: the report with lm-eval's results.
        output: A directory for results.json.
    """
    import lm_eval as harness
    from lm_eval.tasks import TaskManager
    from lm_eval.utils import make_table

    from dlm.decoding.tasks.lm_eval_adapter import DLMEvalLM, register

    if limit is not None:
        positive("--limit", limit)
    manager = TaskManager(include_path=include_path)
    for name in tasks:
        if name not in manager.all_tasks:
            where = f" or in {include_path}" if include_path else " (add --include-path DIR for your own)"
            raise ValueError(f"unknown lm-eval task {name!r}: not among lm-eval's tasks{where}")
    register()
    lm = DLMEvalLM(loaded, **short, max_new_tokens=max_new_tokens, batch_size=batch_size)
    specs: list[str | dict[str, Any]] = list(tasks)
    if data is not None and len(tasks) != 1:
        raise ValueError(f"--data replaces one task's dataset; got --tasks {' '.join(tasks)}")
    with tempfile.TemporaryDirectory(prefix="dlm-lm-eval-") as scratch:  # a corpus's documents as JSONL
        if data is not None:
            specs = [on_local_data(manager, tasks[0], data, data_field, Path(scratch))]
        results = harness.simple_evaluate(
            model=lm,
            tasks=specs,
            task_manager=manager,
            limit=limit,
            num_fewshot=num_fewshot,
            log_samples=False,
            confirm_run_unsafe_code=True,
        )
    metrics, report = lm.report()
    for task, numbers in results["results"].items():
        for key, value in numbers.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                metrics[f"{lm.name}/{task}/{key}"] = value
    report["lm_eval"] = results["results"]
    print(make_table(results))
    print(decode_table([lm.name], metrics))
    if json:
        print(jsonlib.dumps(report, default=str))
    return {"metrics": metrics, "evaluation": report}


def on_local_data(manager: Any, task: str, data: str, field: str, scratch: Path) -> dict[str, Any]:
    """lm-eval's own config of `task` with its dataset replaced by local JSONL as the test split (an
    embedded corpus's held-out documents are written to `scratch` first)."""
    from lm_eval.tasks._yaml_loader import load_yaml

    from dlm.core.corpora import EMBEDDED, embedded_documents

    if data in EMBEDDED:
        file = scratch / f"{data}-test.jsonl"
        docs = embedded_documents(data, "test")
        file.write_text("".join(jsonlib.dumps({field: d.text}) + "\n" for d in docs), encoding="utf-8")
    elif Path(data).is_file():
        file = Path(data)
    else:
        raise ValueError(
            f"--data {data!r} is neither a JSONL file nor an embedded corpus ({', '.join(EMBEDDED)})"
        )
    path = manager.task_index[task].yaml_path
    if path is None:
        raise ValueError(f"lm-eval task {task!r} has no YAML config whose dataset --data could replace")
    config = load_yaml(path, resolve_func=True)
    config.update(
        dataset_path="json",
        dataset_name=None,
        dataset_kwargs={"data_files": {"test": str(file.resolve())}},
        training_split=None,
        validation_split=None,
        fewshot_split=None,
        test_split="test",
    )
    return config
