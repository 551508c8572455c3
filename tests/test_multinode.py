"""Two simulated nodes on 127.0.0.1 (CPU, gloo) train the tiny conversion config exactly as one
process with the same global batch does, and only rank 0 writes checkpoints. Also 1 node x 2
devices (Lightning starts the second process itself)."""

import socket
import subprocess

import pytest

STEPS = 4
GLOBAL_BATCH = 4


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def written(directory):
    """Checkpoint files (Lightning's and the exported dlm directory's) under `directory`."""
    return sorted(
        str(p.relative_to(directory))
        for p in directory.rglob("*")
        if p.suffix in (".ckpt", ".safetensors", ".tmp") or p.name == "dlm.json"
    )


def check(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.fixture
def single(tmp_path, make_config, run_dlm, read_log):
    """Per-step losses of one process with the whole global batch (it also fills the token cache)."""
    work = tmp_path / "single"
    config = make_config(
        work / "c.yaml", **{"trainer.max_steps": STEPS, "data.init_args.batch_size": GLOBAL_BATCH}
    )
    check(run_dlm(["fit", "--config", str(config)], work, DLM_CACHE_DIR=str(tmp_path / "cache")))
    losses = read_log(work / "runs/t/logs/run")
    assert sorted(losses) == list(range(STEPS))
    return losses


def assert_same_losses(losses, reference):
    assert sorted(losses) == sorted(reference)
    for step, loss in reference.items():
        assert abs(losses[step] - loss) <= 1e-6, (step, losses[step], loss)


@pytest.mark.slow
def test_two_simulated_nodes_reproduce_one_process(
    tmp_path, make_config, start_dlm, wait_dlm, read_log, single
):
    # Each node runs in its own directory with the same relative output paths, so a file written
    # by rank 1 would show up under node1/.
    config = make_config(
        tmp_path / "c2.yaml",
        **{
            "trainer.max_steps": STEPS,
            "data.init_args.batch_size": GLOBAL_BATCH // 2,
            "trainer.accelerator": "cpu",
            "trainer.strategy": "ddp",
            "trainer.num_nodes": 2,
            "trainer.devices": 1,
        },
    )
    port = str(free_port())
    procs = []
    for rank in (0, 1):
        work = tmp_path / f"node{rank}"
        work.mkdir()
        env = {
            "NODE_RANK": str(rank),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": port,
            "WORLD_SIZE": "2",
            "DLM_CACHE_DIR": str(tmp_path / "cache"),
        }
        procs.append(start_dlm(["fit", "--config", str(config)], work, **env))
    results = [wait_dlm(p) for p in procs]
    for result in results:
        check(result)
    assert_same_losses(read_log(tmp_path / "node0/runs/t/logs/run"), single)
    node0 = written(tmp_path / "node0")
    assert "runs/t/checkpoints/last.ckpt" in node0 and "runs/t/model/dlm.json" in node0
    assert written(tmp_path / "node1") == [], "only rank 0 writes checkpoints"
    assert not (tmp_path / "node1/runs/t/logs/run/metrics.csv").exists()


@pytest.mark.slow
def test_one_node_two_devices_reproduces_one_process(tmp_path, make_config, run_dlm, read_log, single):
    config = make_config(
        tmp_path / "c2.yaml",
        **{
            "trainer.max_steps": STEPS,
            "data.init_args.batch_size": GLOBAL_BATCH // 2,
            "trainer.accelerator": "cpu",
            "trainer.strategy": "ddp",
            "trainer.devices": 2,
        },
    )
    work = tmp_path / "node"
    work.mkdir()
    env = {
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(free_port()),
        "DLM_CACHE_DIR": str(tmp_path / "cache"),
    }
    check(run_dlm(["fit", "--config", str(config)], work, **env))
    assert_same_losses(read_log(work / "runs/t/logs/run"), single)
    assert "runs/t/checkpoints/last.ckpt" in written(work)
