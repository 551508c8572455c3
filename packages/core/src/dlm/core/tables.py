"""The tables of `dlm-report`: each experiment's `results/tables.yaml` read into Tables, their
results files collected and rendered as markdown (one row per variant: the mean over seeds, ± the
sample sd; with a baseline, the paired differences seed by seed). dlm.core.report writes them into
the READMEs."""

from __future__ import annotations

import glob
import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dlm.core.results import read_results

SPECS = ("apps/*/results/tables.yaml", "bench/results/tables.yaml")


class ReportError(ValueError):
    """Bad input, said in one line."""


@dataclass
class Column:
    label: str
    metric: str | list[str] | None = None  # a key of the file's "metrics" (a list: the first present)
    field: str | None = None  # else a dotted path into the file, e.g. "wall_seconds"
    digits: int = 3

    def value(self, results: dict[str, Any]) -> float | None:
        if self.metric is not None:
            metrics = results.get("metrics", {})
            keys = self.metric if isinstance(self.metric, list) else [self.metric]
            value = next((metrics[k] for k in keys if k in metrics), None)
        else:
            value = results
            for part in str(self.field).split("."):
                value = value.get(part) if isinstance(value, dict) else None
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            return None
        return float(value)


@dataclass
class Table:
    name: str
    spec: Path  # the tables.yaml that defines it
    results: list[str]  # globs relative to the spec's folder
    into: list[str]  # README paths relative to the root
    columns: list[Column]
    variants: list[str] | None = None
    baseline: str | None = None
    note: str | None = None
    runs: dict[str, dict[int, dict[str, Any]]] = field(default_factory=dict)


def load_tables(root: Path) -> dict[str, Table]:
    """Every table of every tables.yaml under root, by name."""
    tables: dict[str, Table] = {}
    for pattern in SPECS:
        for spec in sorted(root.glob(pattern)):
            for table in parse_spec(spec, root):
                if table.name in tables:
                    raise ReportError(
                        f"{rel(spec, root)}: table {table.name!r} is also in {rel(tables[table.name].spec, root)}"
                    )
                tables[table.name] = table
    return tables


def parse_spec(spec: Path, root: Path) -> list[Table]:
    where = rel(spec, root)
    try:
        data = yaml.safe_load(spec.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ReportError(f"{where}: not YAML ({' '.join(str(err).split())})") from None
    if not isinstance(data, dict) or not isinstance(data.get("tables"), dict):
        raise ReportError(f"{where}: expected a mapping `tables:` of table name -> spec")
    out = []
    for name, body in data["tables"].items():
        if not isinstance(body, dict):
            raise ReportError(f"{where}: table {name!r}: expected a mapping")
        unknown = set(body) - {"results", "into", "columns", "variants", "baseline", "note"}
        missing = {"results", "into", "columns"} - set(body)
        if unknown or missing:
            what = f"unknown keys {sorted(unknown)}" if unknown else f"missing {sorted(missing)}"
            raise ReportError(f"{where}: table {name!r}: {what}")
        columns = []
        if not isinstance(body["columns"], list) or not body["columns"]:
            raise ReportError(f"{where}: table {name!r}: `columns` must be a list of columns")
        for column in body["columns"]:
            if (
                not isinstance(column, dict)
                or set(column) - {"label", "metric", "field", "digits"}
                or "label" not in column
                or ("metric" in column) == ("field" in column)
                or not isinstance(column.get("digits", 0), int)
            ):
                raise ReportError(
                    f"{where}: table {name!r}: a column is {{label, metric | field, digits?}}, got {column!r}"
                )
            columns.append(Column(**column))
        into = body["into"] if isinstance(body["into"], list) else [body["into"]]
        out.append(
            Table(
                str(name),
                spec,
                [
                    str(g)
                    for g in (body["results"] if isinstance(body["results"], list) else [body["results"]])
                ],
                [str(p) for p in into],
                columns,
                body.get("variants"),
                body.get("baseline"),
                body.get("note"),
            )
        )
    return out


def rel(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)


def collect(table: Table, root: Path) -> None:
    """Read the table's results files into table.runs[variant][seed]; one line on any problem."""
    paths = sorted({p for g in table.results for p in glob.glob(str(table.spec.parent / g), recursive=True)})
    if not paths:
        raise ReportError(f"table {table.name!r}: no results files match {sources(table, root)}")
    files = [(rel(Path(path), root), read_results(path)) for path in paths]
    experiments = {results.get("experiment") for _, results in files}
    for where, results in files:
        variant, seed = results.get("variant"), results.get("seed")
        if not isinstance(variant, str) or isinstance(seed, bool) or not isinstance(seed, int):
            raise ReportError(f"{where}: needs a string `variant` and an integer `seed`")
        if len(experiments) > 1:  # rows of several experiments: "experiment/variant"
            variant = f"{results.get('experiment')}/{variant}"
        runs = table.runs.setdefault(variant, {})
        if seed in runs:
            raise ReportError(f"table {table.name!r}: variant {variant!r} seed {seed} twice: {where}")
        runs[seed] = results
    for name in [*(table.variants or []), *([table.baseline] if table.baseline else [])]:
        if name not in table.runs:
            raise ReportError(
                f"table {table.name!r}: no results of variant {name!r} (have {sorted(table.runs)})"
            )


def cell(values: list[float], digits: int, sign: bool = False) -> str:
    """The mean, ± the sample standard deviation over several values; "-" for none."""
    if not values:
        return "-"
    mean = statistics.fmean(values)
    mean = 0.0 if round(mean, digits) == 0 else mean  # no "-0"
    text = f"{mean:+.{digits}f}" if sign else f"{mean:.{digits}f}"
    if len(values) > 1:
        text += f" ± {statistics.stdev(values):.{digits}f}"
    return text


def paired(runs: dict[int, dict], base: dict[int, dict], column: Column) -> list[float]:
    """variant - baseline, seed by seed, over the seeds where both have the value."""
    out = []
    for seed in sorted(set(runs) & set(base)):
        a, b = column.value(runs[seed]), column.value(base[seed])
        if a is not None and b is not None:
            out.append(a - b)
    return out


def seeds_text(seeds: Iterable[int]) -> str:
    return ", ".join(str(s) for s in sorted(seeds)) or "-"


def row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def render(table: Table, root: Path) -> str:
    """The markdown between the table's markers (without them)."""
    names = table.variants or sorted(table.runs)
    head = ["variant", "seeds", *(c.label for c in table.columns)]
    lines = [row(head), "|---|---|" + "---:|" * len(table.columns)]
    for name in names:
        runs = table.runs[name]
        values = [[v for s in sorted(runs) if (v := c.value(runs[s])) is not None] for c in table.columns]
        cells = [cell(v, c.digits) for v, c in zip(values, table.columns, strict=True)]
        lines.append(row([name, seeds_text(runs), *cells]))
    if table.baseline:
        base = table.runs[table.baseline]
        lines += ["", f"Paired differences, variant − {table.baseline}, seed by seed (mean ± sample sd):", ""]
        lines += [row(head), "|---|---|" + "---:|" * len(table.columns)]
        for name in names:
            if name == table.baseline:
                continue
            runs = table.runs[name]
            cells = [cell(paired(runs, base, c), c.digits, sign=True) for c in table.columns]
            lines.append(row([f"{name} − {table.baseline}", seeds_text(set(runs) & set(base)), *cells]))
    every = [r for runs in table.runs.values() for r in runs.values()]
    commits = sorted(
        {
            str(r.get("commit") or "unknown")[:12] + ("+dirty" if "+dirty" in str(r.get("commit")) else "")
            for r in every
        }
    )
    machines = sorted({machine_text(r) for r in every})
    lines += [
        "",
        f"Generated by `dlm-report` from {sources(table, root)} "
        f"({len(every)} files; commit {', '.join(commits)}; {'; '.join(machines)}).",
    ]
    if table.note:
        lines.append(str(table.note).strip())
    return "\n".join(lines) + "\n"


def sources(table: Table, root: Path) -> str:
    """The table's globs, relative to the root, as markdown code."""
    return ", ".join(f"`{rel(table.spec.parent / g, root)}`" for g in table.results)


def machine_text(results: dict[str, Any]) -> str:
    machine = results.get("machine") or {}
    threads = machine.get("threads")
    parts = [str(machine.get("gpu") or machine.get("cpu") or "unknown machine")]
    parts += [f"{threads} thread{'s' if threads != 1 else ''}"] if threads is not None else []
    parts += [str(results["precision"])] if results.get("precision") else []
    return ", ".join(parts)
