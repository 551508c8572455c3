"""Every shipped ablation (apps/*/ablations/*.yaml) expands, through dlm-ablate, into `dlm` commands
that parse against the real CLI; the runner's bad input is one line; and the README tables agree
with the committed results files (what `make test` runs as `dlm-report --check`)."""

from pathlib import Path

import pytest

from dlm.core.report import report
from dlm.training.ablate import main as ablate
from dlm.training.ablate import plan
from dlm.training.cli import main

ROOT = Path(__file__).resolve().parents[1]
ABLATIONS = sorted(ROOT.glob("apps/*/ablations/*.yaml"))
RUNS = [(a, run) for a in ABLATIONS for run in plan(a.relative_to(ROOT), seeds=[0])]


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)  # the ablations name configs from the repository root
    monkeypatch.setenv("DLM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb"))


def test_every_experiment_has_an_ablation_and_results():
    experiments = {p.name for p in (ROOT / "apps").iterdir() if (p / "configs").is_dir()}
    assert experiments == {a.parent.parent.name for a in ABLATIONS}
    for name in experiments:
        assert (ROOT / "apps" / name / "results/tables.yaml").is_file(), name
        assert list((ROOT / "apps" / name / "results").glob("*/*/seed*.json")), name


@pytest.mark.parametrize(
    "ablation, run", RUNS, ids=[f"{a.parent.parent.name}/{a.stem}/{r.variant}" for a, r in RUNS]
)
def test_variant_parses(ablation, run, capsys):
    experiment = ablation.parent.parent.name
    assert run.results == Path(f"apps/{experiment}/results/{ablation.stem}/{run.variant}/seed0.json")
    assert f"--trainer.default_root_dir=runs/{experiment}/{ablation.stem}/{run.variant}/seed0" in run.args
    with pytest.raises(SystemExit) as exit_info:
        main([*run.args, "--print_config"])
    assert exit_info.value.code in (0, None)
    printed = capsys.readouterr().out
    assert f"variant: {run.variant}" in printed and "seed_everything: 0" in printed


def test_runner_bad_input_is_one_line(tmp_path):
    bad = tmp_path / "apps/x/ablations/bad.yaml"
    bad.parent.mkdir(parents=True)
    bad.write_text("config: c.yaml\nvariants: {a: {}}\n")
    with pytest.raises(SystemExit) as exit_info:
        ablate([str(bad), "--variants", "b"])
    assert exit_info.value.code == f"dlm-ablate: error: {bad}: unknown variant 'b'; variants: a"
    bad.write_text("config: c.yaml\nvariants: {a: {sett: {}}}\n")
    with pytest.raises(SystemExit) as exit_info:
        ablate([str(bad)])
    assert "variant 'a': a mapping with keys among ['command', 'config', 'set']" in exit_info.value.code


def test_dry_run_and_substitution(tmp_path, capsys):
    spec = tmp_path / "apps/x/ablations/a.yaml"
    spec.parent.mkdir(parents=True)
    spec.write_text(
        "config: c.yaml\nseeds: [3]\nseed_keys: [model.init_args.seed]\n"
        "set: {trainer.max_steps: 2}\n"
        "variants:\n  v: {command: test, set: {ckpt_path: 'runs/x/a/w/seed{seed}/last.ckpt', k: [1, 2]}}\n"
    )
    ablate([str(spec), "--dry-run"])
    out = capsys.readouterr().out
    assert " test --config c.yaml --trainer.max_steps=2 --ckpt_path=runs/x/a/w/seed3/last.ckpt " in out
    assert "'--k=[1, 2]' --seed_everything=3 --model.init_args.seed=3" in out
    (run,) = plan(spec)
    assert run.results == tmp_path / "apps/x/results/a/v/seed3.json"  # the copy, once it succeeded
    assert run.written == Path("runs/x/a/v/seed3/results.json")  # the run's default_root_dir
    assert "--results.experiment=x --results.variant=v" in out
    assert not (tmp_path / "apps/x/results").exists()


def test_readme_tables_match_the_committed_results():
    assert report(ROOT, check=True) == []
