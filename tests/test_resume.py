"""A run stopped and resumed with --ckpt_path last reproduces the uninterrupted run bit for bit on
CPU: the loss and learning rate of every later step, and the final weights, optimizer moments and
LR schedule.

The tiny corpus gives 9 batches per epoch, so the stops fall mid-epoch (step 5: the data order and
the corruption draws must continue inside the epoch) and at the end of the epoch (step 9), and the
run goes on into the next epoch."""

import pytest
import torch

from dlm.training.cli import main

STOPS = (5, 9)
TOTAL = 13


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("DLM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("WANDB_MODE", "offline")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: threads only contend
    yield
    torch.set_num_threads(threads)


def fit(monkeypatch, work, config, *extra):
    work.mkdir(exist_ok=True)
    monkeypatch.chdir(work)
    main(["fit", "--config", str(config), *extra])


@pytest.mark.slow
def test_stopped_and_resumed_run_equals_uninterrupted_run(tmp_path, monkeypatch, make_config, read_log):
    full, parts = tmp_path / "full", tmp_path / "parts"
    fit(monkeypatch, full, make_config(tmp_path / "full.yaml", **{"trainer.max_steps": TOTAL}))
    expected_loss = read_log(full / "runs/t/logs/run")
    expected_lr = read_log(full / "runs/t/logs/run", "train/lr")
    assert sorted(expected_loss) == list(range(TOTAL))
    assert max(read_log(full / "runs/t/logs/run", "epoch").values()) == 1, "the run crosses an epoch"

    losses, lrs = {}, {}
    for part, stop in enumerate((*STOPS, TOTAL)):
        config = make_config(tmp_path / f"part{part}.yaml", run=f"part{part}", **{"trainer.max_steps": stop})
        fit(monkeypatch, parts, config, *(["--ckpt_path", "last"] if part else []))
        log = parts / f"runs/t/logs/part{part}"
        assert min(read_log(log)) == (STOPS[part - 1] if part else 0), "resumed where it stopped"
        losses.update(read_log(log))
        lrs.update(read_log(log, "train/lr"))

    assert losses == expected_loss, "every step's loss, bit for bit"
    assert lrs == expected_lr
    final = torch.load(full / "runs/t/checkpoints/last.ckpt", weights_only=True)
    resumed = torch.load(parts / "runs/t/checkpoints/last.ckpt", weights_only=True)
    assert resumed["global_step"] == final["global_step"] == TOTAL
    for name, tensor in final["state_dict"].items():
        assert torch.equal(resumed["state_dict"][name], tensor), name
    moments = zip(
        final["optimizer_states"][0]["state"].values(), resumed["optimizer_states"][0]["state"].values()
    )
    for a, b in moments:
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert final["lr_schedulers"] == resumed["lr_schedulers"]
