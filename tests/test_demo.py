"""`make demo` in fast form, end to end: pretrain (fast_dev_run) -> tri-mode (fast_dev_run) from that
checkpoint -> test of every decoding mode, with stage reuse; apps/trimode/configs/tiny.yaml from the
same AR checkpoint; and the bad inputs named in the issue, each a one-line error."""

import importlib.util
import os
import subprocess
from pathlib import Path

import pytest
import torch

from dlm.training.cli import main as dlm

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "apps/trimode/configs/tiny.yaml"
SMALL_DECODE = [
    "--model.init_args.evaluation.init_args.prompts",
    "2",
    "--model.init_args.evaluation.init_args.max_new_tokens",
    "16",
]


def load_demo():
    spec = importlib.util.spec_from_file_location("trimode_demo", ROOT / "apps/trimode/demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DLM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow
def test_demo_fast_pipeline_reuses_stages_and_tiny_config_runs(tmp_path, capsys):
    demo = load_demo()
    demo.main(["--fast"])
    out = capsys.readouterr().out
    runs = tmp_path / "runs/demo"
    for stage in ("pretrain", "trimode"):
        assert (runs / stage / "model/dlm.json").is_file()
    table = (runs / "trimode/decoding.md").read_text()
    for name in ("ar", "diffusion", "self_spec", "self_spec_fused"):
        assert f"| {name} |" in table
    assert "| decoder | TPF | tau | tok/s | tok/s vs ar | agreement with ar |" in table
    assert "| self_spec |" in out and "acceptance-by-position plot:" in out
    assert (runs / "trimode/acceptance.png").stat().st_size > 0
    assert "demo done in" in out

    demo.main(["--fast"])
    out = capsys.readouterr().out
    assert out.count("reusing runs/demo/") == 2 and "| self_spec |" in out

    # The tiny config from the same AR checkpoint (same shape as apps/pretrain/configs/tiny.yaml's).
    pretrained = str(runs / "pretrain/model")
    tiny = ["fit", "--config", str(TINY), "--model.init_args.init_from", pretrained]
    dlm([*tiny, "--trainer.fast_dev_run", "true", *SMALL_DECODE])
    assert (tmp_path / "runs/trimode-tiny/model/dlm.json").is_file()
    assert "| self_spec |" in (tmp_path / "runs/trimode-tiny/decoding.md").read_text()

    with pytest.raises(SystemExit) as exit_info:
        dlm([*tiny, "--data.init_args.seq_len", "252"])
    assert exit_info.value.code == "dlm: error: ValueError: seq_len 252 is not a multiple of block_size 8"
    with pytest.raises(SystemExit) as exit_info:
        dlm([*tiny, "--model.init_args.architecture.dim", "64"])
    assert exit_info.value.code == (
        f"dlm: error: ValueError: {pretrained}: the checkpoint has dim=128 but the config sets architecture.dim=64"
    )


def test_fresh_starts_over(tmp_path):
    finished = tmp_path / "runs/demo/pretrain/model"
    finished.mkdir(parents=True)
    (finished / "dlm.json").write_text("{}")
    demo = load_demo()
    demo.prepare_output(fresh=False)
    assert (finished / "dlm.json").is_file()
    demo.prepare_output(fresh=True)
    assert (tmp_path / "runs/demo").is_dir() and not any((tmp_path / "runs/demo").iterdir())


def test_unwritable_output_directory_is_one_line(tmp_path):
    (tmp_path / "runs").write_text("a file where the output directory should be")
    with pytest.raises(SystemExit) as exit_info:
        load_demo().main(["--fast"])
    message = exit_info.value.code
    assert message.startswith(f"demo: error: cannot write the demo's output directory {tmp_path}/runs/demo")
    assert "\n" not in message
    make = subprocess.run(
        ["make", "--no-print-directory", "-f", str(ROOT / "Makefile"), "demo"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert make.returncode != 0
    assert make.stderr.splitlines()[0] == (
        f"make demo: error: cannot write runs/demo in {tmp_path}; run it from a writable copy of the repository"
    )
    assert not (tmp_path / ".venv").exists(), "the check runs before setup"


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write to any directory")
def test_read_only_directory_is_one_line(tmp_path):
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs").chmod(0o500)
    try:
        with pytest.raises(SystemExit) as exit_info:
            load_demo().main(["--fast"])
        assert "Permission denied" in exit_info.value.code
    finally:
        (tmp_path / "runs").chmod(0o700)
