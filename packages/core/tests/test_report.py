"""dlm-report: tables from hand-made results files, checked against a slow obvious computation;
--check on stale and fresh tables; one-line errors for bad input."""

import json
import math
import re

import pytest

from dlm.core.report import main, report

SPEC = """
tables:
  demo:
    results: abl/*/seed*.json
    into: apps/exp/README.md
    variants: [base, new]
    baseline: base
    columns:
      - {label: loss, metric: test/loss, digits: 4}
      - {label: s, field: wall_seconds, digits: 1}
"""
README = "# exp\n\nbefore\n\n<!-- dlm-report: demo -->\nold\n<!-- /dlm-report -->\n\nafter\n"
VALUES = {
    ("base", 0): 1.0,
    ("base", 1): 1.5,
    ("base", 2): 1.25,
    ("new", 0): 0.75,
    ("new", 1): 1.5,
    ("new", 3): 9.0,
}


def write_run(root, variant, seed, loss, seconds=10.0, **extra):
    path = root / f"apps/exp/results/abl/{variant}/seed{seed}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {
        "schema": 1,
        "command": ["dlm", "fit"],
        "commit": "0123456789abcdef",
        "machine": {"cpu": "Test CPU", "threads": 1},
        "experiment": "exp",
        "variant": variant,
        "seed": seed,
        "wall_seconds": seconds,
        "metrics": {"test/loss": loss},
        **extra,
    }
    path.write_text(json.dumps(data))
    return path


@pytest.fixture
def root(tmp_path):
    (tmp_path / "apps/exp/results").mkdir(parents=True)
    (tmp_path / "apps/exp/results/tables.yaml").write_text(SPEC)
    (tmp_path / "apps/exp/README.md").write_text(README)
    for (variant, seed), loss in VALUES.items():
        write_run(tmp_path, variant, seed, loss, seconds=10.0 + seed)
    return tmp_path


def slow_mean_sd(values):
    n = len(values)
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else None
    return mean, sd


def block(root):
    text = (root / "apps/exp/README.md").read_text()
    return re.search(r"<!-- dlm-report: demo -->\n(.*?)<!-- /dlm-report -->", text, re.DOTALL).group(1)


def cells(text, first):
    line = next(line for line in text.splitlines() if line.startswith(f"| {first} |"))
    return [c.strip() for c in line.strip("|").split("|")]


def test_means_sds_and_paired_differences(root):
    assert report(root) == ["apps/exp/README.md: table 'demo' updated"]
    text = block(root)
    for variant in ("base", "new"):
        seeds = sorted(s for v, s in VALUES if v == variant)
        mean, sd = slow_mean_sd([VALUES[variant, s] for s in seeds])
        row = cells(text, variant)
        assert row[1] == ", ".join(map(str, seeds))
        assert row[2] == f"{mean:.4f} ± {sd:.4f}"
        s_mean, s_sd = slow_mean_sd([10.0 + s for s in seeds])
        assert row[3] == f"{s_mean:.1f} ± {s_sd:.1f}"
    # Paired by seed: only seeds 0 and 1 are in both; seed 3's 9.0 and seed 2 do not count.
    diffs = [VALUES["new", s] - VALUES["base", s] for s in (0, 1)]
    mean, sd = slow_mean_sd(diffs)
    row = cells(text, "new − base")
    assert row[1] == "0, 1" and row[2] == f"{mean:+.4f} ± {sd:.4f}"
    assert "3 files" not in text and "6 files" in text and "Test CPU, 1 thread" in text
    readme = (root / "apps/exp/README.md").read_text()
    assert readme.startswith("# exp\n\nbefore\n\n") and readme.endswith("<!-- /dlm-report -->\n\nafter\n")
    assert report(root) == []  # idempotent: nothing left to update


def test_check_fails_on_stale_and_passes_on_fresh(root, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--root", str(root), "--check"])
    assert exit_info.value.code == 1
    out = capsys.readouterr().out.splitlines()
    assert out == ["apps/exp/README.md: table 'demo' differs from its results files (run dlm-report)"]
    assert "old" in block(root)  # --check writes nothing
    main(["--root", str(root)])
    capsys.readouterr()
    main(["--root", str(root), "--check"])  # fresh: exits normally
    assert capsys.readouterr().out == ""
    write_run(root, "new", 1, 1.75)  # a results file changes: the table is stale again
    with pytest.raises(SystemExit) as exit_info:
        main(["--root", str(root), "--check"])
    assert exit_info.value.code == 1


def test_single_seed_and_missing_metric(root):
    write_run(root, "single", 5, 2.0)
    write_run(root, "nometric", 0, 1.0)
    (root / "apps/exp/results/abl/nometric/seed0.json").write_text(
        json.dumps(
            {**json.loads((root / "apps/exp/results/abl/nometric/seed0.json").read_text()), "metrics": {}}
        )
    )
    spec = SPEC.replace("variants: [base, new]", "variants: [base, new, single, nometric]")
    (root / "apps/exp/results/tables.yaml").write_text(spec)
    report(root)
    text = block(root)
    assert cells(text, "single")[2] == "2.0000"  # one seed: no ±
    assert cells(text, "nometric")[2] == "-"
    assert cells(text, "single − base")[1:3] == ["-", "-"]  # no common seed


def error_of(root, capsys, *args):
    with pytest.raises(SystemExit) as exit_info:
        main(["--root", str(root), *args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("dlm-report: error: ")
    return err


def test_malformed_results_file(root, capsys):
    (root / "apps/exp/results/abl/base/seed0.json").write_text("{not json")
    assert "abl/base/seed0.json: not a results file (not JSON" in error_of(root, capsys)
    (root / "apps/exp/results/abl/base/seed0.json").write_text('{"schema": 1}')
    assert "missing command, commit, machine, metrics" in error_of(root, capsys)
    path = write_run(root, "base", 0, 1.0)
    path.write_text(json.dumps({**json.loads(path.read_text()), "seed": None}))
    assert "needs a string `variant` and an integer `seed`" in error_of(root, capsys)


def test_unknown_table_and_missing_marker(root, capsys):
    assert "unknown table 'nope'; known: demo" in error_of(root, capsys, "nope")
    (root / "apps/exp/README.md").write_text("# exp\n")
    assert "apps/exp/README.md: no `<!-- dlm-report: demo -->`" in error_of(root, capsys)
    (root / "apps/exp/README.md").write_text(README + "<!-- dlm-report: ghost -->\n<!-- /dlm-report -->\n")
    assert "marker of unknown table 'ghost'" in error_of(root, capsys)


def test_bad_spec(root, capsys):
    (root / "apps/exp/results/tables.yaml").write_text("tables:\n  demo:\n    results: x\n")
    assert "table 'demo': missing ['columns', 'into']" in error_of(root, capsys)
    (root / "apps/exp/results/tables.yaml").write_text(SPEC.replace("digits: 4", "digit: 4"))
    assert "a column is {label, metric | field, digits?}" in error_of(root, capsys)
    (root / "apps/exp/results/tables.yaml").write_text("tables: [")
    assert "apps/exp/results/tables.yaml: not YAML" in error_of(root, capsys)
    (root / "apps/exp/results/tables.yaml").write_text(SPEC.replace("abl/*/seed*.json", "none/*.json"))
    assert "no results files match `apps/exp/results/none/*.json`" in error_of(root, capsys)
    (root / "apps/exp/results/tables.yaml").write_text(SPEC.replace("baseline: base", "baseline: gone"))
    assert "no results of variant 'gone'" in error_of(root, capsys)
