"""A real `dlm fit` killed with SIGKILL while it writes a checkpoint every step leaves only complete
checkpoint files, and `--ckpt_path last` resumes from the last of them."""

import os
import signal
import time

import pytest
import torch

from dlm.core import load_model


def checkpoints(directory):
    return sorted(directory.glob("*.ckpt")) if directory.is_dir() else []


@pytest.mark.slow
def test_sigkill_mid_run_leaves_complete_checkpoints_and_resumes(
    tmp_path, make_config, start_dlm, run_dlm, wait_dlm, read_log
):
    env = {"DLM_CACHE_DIR": str(tmp_path / "cache")}
    # A file per step besides last.ckpt: many saves, one of which the kill interrupts.
    config = make_config(
        tmp_path / "c.yaml", run="killed", checkpoint={"save_top_k": -1}, **{"trainer.max_steps": 10_000}
    )
    work = tmp_path / "work"
    work.mkdir()
    ckpt_dir = work / "runs/t/checkpoints"
    proc = start_dlm(["fit", "--config", str(config)], work, **env)
    deadline = time.monotonic() + 180
    while len(checkpoints(ckpt_dir)) < 6:
        assert proc.poll() is None, wait_dlm(proc).stderr[-3000:]
        assert time.monotonic() < deadline, "no checkpoints were written"
        time.sleep(0.05)
    # Kill as soon as a save is seen in progress (its temporary file exists), else after a while.
    deadline = time.monotonic() + 10
    while not any(name.endswith(".tmp") for name in os.listdir(ckpt_dir)) and time.monotonic() < deadline:
        pass
    proc.send_signal(signal.SIGKILL)
    assert wait_dlm(proc).returncode == -signal.SIGKILL

    files = checkpoints(ckpt_dir)
    assert ckpt_dir / "last.ckpt" in files
    steps = []
    for file in files:
        state = torch.load(file, weights_only=True)  # a truncated file would raise here
        assert {"state_dict", "optimizer_states", "loops", "dlm"} <= state.keys(), file
        steps.append(state["global_step"])
    leftovers = [p.name for p in ckpt_dir.iterdir() if p not in files]
    assert all(name.startswith(".") and name.endswith(".tmp") for name in leftovers), leftovers
    load_model(ckpt_dir / "last.ckpt")
    step = torch.load(ckpt_dir / "last.ckpt", weights_only=True)["global_step"]
    # A step's file is saved before last.ckpt, so the kill may have caught last.ckpt one step behind.
    assert step >= max(steps) - 1 and step >= 4

    resume = make_config(tmp_path / "r.yaml", run="resumed", **{"trainer.max_steps": step + 2})
    result = run_dlm(["fit", "--config", str(resume), "--ckpt_path", "last"], work, **env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(read_log(work / "runs/t/logs/resumed")) == [step, step + 1]
    assert torch.load(ckpt_dir / "last.ckpt", weights_only=True)["global_step"] == step + 2
    assert not [p for p in ckpt_dir.iterdir() if p.name.endswith(".tmp")], (
        "the next saves removed stale temporary files"
    )
