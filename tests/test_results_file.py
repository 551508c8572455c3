"""Every `dlm fit` / `dlm test` writes one complete results file (dlm.training.ResultsWriter, wired
by the CLI): metrics of both stages, the resolved config, commit, machine, precision, wall time,
the command and the names that let dlm-report aggregate it."""

import json
from types import SimpleNamespace

import pytest
import torch

from dlm.core.results import REQUIRED, read_results
from dlm.training.cli import main
from dlm.training.results import ResultsWriter, default_names


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DLM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("WANDB_MODE", "offline")


def test_fit_then_test_writes_a_complete_results_file(tmp_path, make_config):
    config = make_config(
        tmp_path / "apps/conversion/configs/small.yaml",
        **{"test_after_fit": True, "trainer.max_steps": 2, "trainer.limit_test_batches": 1},
    )
    main(["fit", "--config", str(config), "--seed_everything", "3", "--results.variant", "v1"])
    results = read_results(tmp_path / "runs/t/results.json")  # default: in default_root_dir
    assert set(REQUIRED) <= set(results)
    assert results["command"][:2] == ["dlm", "fit"] and "--seed_everything" in results["command"]
    assert (results["experiment"], results["variant"], results["seed"]) == ("conversion", "v1", 3)
    assert results["stages"] == ["fit", "test"] and results["steps"] == 2
    assert results["precision"] == "32-true" and results["dtype"] == "float32"
    assert results["wall_seconds"] > 0
    assert {"cpu", "threads", "load_average"} <= set(results["machine"])
    assert "train/loss" in results["metrics"] and "test/ar_loss" in results["metrics"]
    assert all(isinstance(v, float) for v in results["metrics"].values())
    resolved = results["config"]
    assert resolved["trainer"]["max_steps"] == 2 and resolved["seed_everything"] == 3
    assert resolved["model"]["class_path"] == "dlm.training.ConversionModule"
    assert resolved["model"]["init_args"]["block_size"] == 16  # defaults resolved too
    assert "evaluation" in results  # None: this config decodes nothing

    other = tmp_path / "elsewhere/r.json"
    main(["test", "--config", str(config), "--results.path", str(other), "--results.experiment", "x"])
    tested = read_results(other)
    assert tested["stages"] == ["test"] and tested["experiment"] == "x" and tested["variant"] == "small"
    assert "train/loss" not in tested["metrics"] and "test/ar_loss" in tested["metrics"]
    assert tested["steps"] == 0  # the config's model, untrained

    saved = tmp_path / "saved/r.json"  # a test of a trained checkpoint records its steps
    main(
        [
            "test",
            "--config",
            str(config),
            "--ckpt_path",
            "runs/t/checkpoints/last.ckpt",
            "--results.path",
            str(saved),
        ]
    )
    assert read_results(saved)["steps"] == 2


def test_disabled_writes_nothing(tmp_path, make_config):
    config = make_config(tmp_path / "c.yaml", **{"trainer.max_steps": 1})
    main(["fit", "--config", str(config), "--results.enabled", "false"])
    assert not (tmp_path / "runs/t/results.json").exists()


def test_evaluation_report_and_rank_zero(tmp_path):
    """The module's evaluation_report goes into the file; only global rank zero writes."""
    module = torch.nn.Linear(2, 2).to(torch.bfloat16)
    module.evaluation_report = {"decoders": {"ar": {"tpf": 1.0}}}
    writer = ResultsWriter(path=str(tmp_path / "r.json"), experiment="e", variant="v")
    writer.bind(["dlm", "test"], {"seed_everything": 7}, [])
    writer.commit = "abc123"  # what bind read: the file records the run's start, not HEAD at its end
    trainer = SimpleNamespace(
        callback_metrics={"test/x": torch.tensor(2.5), "test/vec": torch.ones(3), "test/nan": float("nan")},
        is_global_zero=False,
        global_step=0,
        precision="bf16-true",
        default_root_dir=str(tmp_path),
    )
    writer.on_test_end(trainer, module)
    assert not (tmp_path / "r.json").exists()
    trainer.is_global_zero = True
    writer.on_test_end(trainer, module)
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["evaluation"] == {"decoders": {"ar": {"tpf": 1.0}}}
    assert data["metrics"] == {"test/nan": None, "test/x": 2.5}  # vectors dropped, NaN as null
    assert (data["seed"], data["dtype"], data["precision"]) == (7, "bfloat16", "bf16-true")
    assert data["commit"] == "abc123"


def test_default_names():
    assert default_names(["apps/trimode/configs/tiny.yaml", "o.yaml"]) == ("trimode", "tiny")
    assert default_names(["/x/my.yaml"]) == (None, "my")
    assert default_names([]) == (None, None)
