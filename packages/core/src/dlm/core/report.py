"""`dlm-report`: README tables generated from committed results files.

Each experiment's `results/tables.yaml` (`apps/<x>/results/tables.yaml`, `bench/results/tables.yaml`)
names its tables: which results files (a glob under that folder), which columns (a metric of the
run or a field of the file), the row order, the baseline of the paired differences and the
README(s) the table goes into, between

    <!-- dlm-report: NAME -->
    ...generated...
    <!-- /dlm-report -->

A row is a variant (`experiment/variant` when the files come from several experiments): each cell the mean over its seeds, ± the sample standard deviation when there
are several. With a baseline, a second table gives every other variant minus the baseline, seed by
seed over the seeds both have (mean ± sample sd of the differences: the seed fixes data order and
held-out sample, so the paired difference cancels what the seeds share).

    dlm-report              # rewrite every table in place
    dlm-report NAME ...     # only these tables
    dlm-report --check      # exit 1, one line per table that differs from what the results give

Bad input (a malformed results file or tables.yaml, an unknown table, a missing marker) ends with
one line on stderr and exit status 2. Plain Python over JSON and YAML: no model code runs.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from dlm.core.tables import SPECS, ReportError, collect, load_tables, render

BEGIN = "<!-- dlm-report: {} -->"
END = "<!-- /dlm-report -->"
MARKER = re.compile(r"<!-- dlm-report: (\S+) -->\n(.*?)<!-- /dlm-report -->", re.DOTALL)


def fill(text: str, blocks: dict[str, str], where: str, known: set[str]) -> str:
    """`text` with each named block between its markers replaced."""
    found = {m.group(1) for m in MARKER.finditer(text)}
    if unknown := sorted(found - known):
        raise ReportError(f"{where}: marker of unknown table {unknown[0]!r} (not in any results/tables.yaml)")
    for name in blocks:
        if name not in found:
            raise ReportError(f"{where}: no `{BEGIN.format(name)}` ... `{END}` block for table {name!r}")
    return MARKER.sub(
        lambda m: BEGIN.format(m.group(1)) + "\n" + blocks.get(m.group(1), m.group(2)) + END, text
    )


def report(root: Path, names: list[str] | None = None, check: bool = False) -> list[str]:
    """Regenerate the tables (all, or `names`); with `check`, write nothing and return one line per
    table whose README block differs. Returns the lines to print."""
    tables = load_tables(root)
    if not tables:
        raise ReportError(f"no tables: none of {', '.join(SPECS)} under {root}")
    if unknown := [n for n in names or [] if n not in tables]:
        raise ReportError(f"unknown table {unknown[0]!r}; known: {', '.join(sorted(tables))}")
    chosen = [tables[n] for n in names] if names else list(tables.values())
    by_readme: dict[str, dict[str, str]] = {}
    for table in chosen:
        collect(table, root)
        block = render(table, root)
        for readme in table.into:
            by_readme.setdefault(readme, {})[table.name] = block
    lines = []
    for readme, blocks in by_readme.items():
        path = root / readme
        if not path.is_file():
            raise ReportError(f"{readme}: no such README (named by table {next(iter(blocks))!r})")
        old = path.read_text(encoding="utf-8")
        new = fill(old, blocks, readme, set(tables))
        current = {m.group(1): m.group(2) for m in MARKER.finditer(old)}
        for name, block in blocks.items():
            if current.get(name) != block:
                lines.append(
                    f"{readme}: table {name!r} "
                    + ("differs from its results files (run dlm-report)" if check else "updated")
                )
        if not check and new != old:
            path.write_text(new, encoding="utf-8")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="dlm-report", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("tables", nargs="*", help="table names (default: every table)")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 when a table differs")
    parser.add_argument("--root", default=".", help="the repository root (default: the working directory)")
    args = parser.parse_args(argv)
    try:
        lines = report(Path(args.root), args.tables, args.check)
    except (ValueError, FileNotFoundError) as err:
        print(f"dlm-report: error: {err}", file=sys.stderr)
        sys.exit(2)
    for line in lines:
        print(line)
    if args.check and lines:
        sys.exit(1)


if __name__ == "__main__":
    main()
