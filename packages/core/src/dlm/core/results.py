"""Results files: what one run measured, with what it takes to trust and repeat it.

Every entry point that measures something (`dlm fit` / `dlm test`, `dlm-decode`, `dlm-eval`, the
benchmarks) writes one small JSON file through `write_results`: the numbers beside the command,
the resolved config, the git commit and the machine. README tables are generated from these files,
never typed by hand, so each figure can be traced to the command that made it.
"""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

SCHEMA = 1
REQUIRED = ("schema", "command", "commit", "machine", "metrics")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, Any]:
    """The machine a measurement ran on: a timing is only comparable on the same one, at the same
    load."""
    import torch  # here, so reading results files (dlm-report) needs no torch code

    info: dict[str, Any] = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "torch": torch.__version__,
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def git_commit(directory: str | Path = ".") -> str | None:
    """HEAD's commit, with "+dirty" when tracked files differ from it; None outside a checkout."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=directory, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty else "")


def finite(value: Any) -> Any:
    """JSON has no NaN or infinity: they are written as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def record(
    metrics: Mapping[str, Any],
    *,
    command: list[str] | None = None,
    config: Mapping[str, Any] | None = None,
    started: float | None = None,
    commit: str | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """A results record: `metrics` plus provenance. `started` (time.time() at the run's start)
    gives the wall time; `commit` the code the run started from (default: HEAD now; a long run
    should pass the one it read at its start, since HEAD may move while it runs); extra `fields`
    (evaluation report, experiment, variant, seed, dtype, ...) are kept as given."""
    out: dict[str, Any] = {
        "schema": SCHEMA,
        "command": list(sys.argv if command is None else command),
        "commit": commit if commit is not None else git_commit(),
        "machine": machine(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if started is not None:
        out["wall_seconds"] = round(time.time() - started, 3)
    if config is not None:
        out["config"] = dict(config)
    out.update(fields)
    out["metrics"] = dict(metrics)
    return finite(out)


def write_results(path: str | Path, results: Mapping[str, Any]) -> Path:
    """Write `results` as JSON all at once (a crash leaves the old file or none, never half)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(finite(results), indent=1, sort_keys=False, default=str) + "\n")
    os.replace(tmp, path)
    return path


def read_results(path: str | Path) -> dict[str, Any]:
    """A results file, or a one-line ValueError saying what is wrong with it."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such results file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not a results file (not JSON: {err})") from None
    if not isinstance(data, dict) or (missing := [k for k in REQUIRED if k not in data]):
        what = "not an object" if not isinstance(data, dict) else f"missing {', '.join(missing)}"
        raise ValueError(f"{path}: not a results file ({what}); expected keys {', '.join(REQUIRED)}")
    if data["schema"] != SCHEMA:
        raise ValueError(f"{path}: results schema {data['schema']!r}, expected {SCHEMA}")
    return data
