"""Tiny runs of the real `dlm` CLI: a random AR checkpoint (dim 32, 2 layers), a small local corpus,
and the tiny conversion config cut down to them, for the multi-process, resume, crash and
bad-input tests."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from dlm.core import ByteTokenizer, ModelConfig, Transformer, save_checkpoint
from dlm.core.fetch import SOURCES

ROOT = Path(__file__).resolve().parents[1]
SMOLLM2 = ROOT / "checkpoints" / SOURCES["smollm2"].directory
SMOLLM2_GGUF = SMOLLM2 / Path(SOURCES["smollm2"].member).name
CONVERSION = ROOT / "apps/conversion/configs/tiny.yaml"
TIMEOUT = 240


@pytest.fixture(scope="session")
def smollm2() -> Path:
    """SmolLM2-135M-Instruct as an HF directory beside its GGUF file. Setup (`make test` -> `make
    smollm2`) always writes it, so its absence is a failure of setup, not a reason to skip."""
    if not (SMOLLM2 / "config.json").is_file() or not SMOLLM2_GGUF.is_file():
        pytest.fail(
            f"{SMOLLM2} (with {SMOLLM2_GGUF.name}) is missing: `make test` prepares it; run `make smollm2`",
            pytrace=False,
        )
    return SMOLLM2


@pytest.fixture
def two_step_config(tmp_path):
    """two_step_config(config, name): a shipped SmolLM2 config (a dict) cut to two steps of 2 x 32
    tokens from 40 documents, its data cached under tmp_path, only its last callback (the export:
    no optimizer state on disk), written to tmp_path/name."""

    def write(config: dict, name: str) -> Path:
        config["data"]["init_args"].update(
            seq_len=32, batch_size=2, max_documents=40, cache_dir=str(tmp_path / "cache")
        )
        config["trainer"].update(
            max_steps=2,
            enable_progress_bar=False,
            enable_model_summary=False,
            callbacks=[config["trainer"]["callbacks"][-1]],
        )
        path = tmp_path / name
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    return write


@pytest.fixture(scope="session")
def tiny_inputs(tmp_path_factory):
    """{"ar": a dlm checkpoint of a random tiny AR model, "corpus": a directory of ~3 KB of text}."""
    root = tmp_path_factory.mktemp("tiny_inputs")
    torch.manual_seed(0)
    model = Transformer(ModelConfig(vocab_size=260, dim=32, n_layers=2, n_heads=2, max_seq_len=64))
    save_checkpoint(model, ByteTokenizer(), root / "ar")
    corpus = root / "corpus"
    corpus.mkdir()
    rows = [
        {"id": f"doc{i}", "text": f"doc {i}: " + " ".join(f"w{(i * 7 + j) % 13}" for j in range(25))}
        for i in range(40)
    ]
    (corpus / "docs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return {"ar": root / "ar", "corpus": corpus}


def set_key(config: dict, dotted: str, value) -> None:
    *parents, last = dotted.split(".")
    for key in parents:
        config = config.setdefault(key, {})
    if value is None:
        config.pop(last, None)
    else:
        config[last] = value


@pytest.fixture
def make_config(tiny_inputs):
    """make_config(path, run="run", checkpoint=None, **changes): apps/conversion/configs/tiny.yaml
    converting the tiny AR checkpoint on the tiny corpus (seq_len 64, batch 4, last.ckpt every
    step in runs/t/checkpoints, CSV log at runs/t/logs/<run>/metrics.csv, no validation or test),
    with `checkpoint` updating ModelCheckpoint's init_args and dotted-key changes (None deletes a
    key), written to `path`."""

    def make(path: Path, run: str = "run", checkpoint: dict | None = None, **changes) -> Path:
        config = yaml.safe_load(CONVERSION.read_text())
        model = config["model"]["init_args"]
        model["init_from"] = str(tiny_inputs["ar"])
        model.pop("evaluation")
        config["test_after_fit"] = False
        config["data"]["init_args"].update(
            corpus=str(tiny_inputs["corpus"]),
            seq_len=64,
            batch_size=4,
            validation_fraction=0.2,
            test_fraction=0.1,
        )
        trainer = config["trainer"]
        trainer.pop("val_check_interval")
        trainer.update(
            max_steps=4,
            limit_val_batches=0,
            log_every_n_steps=1,
            enable_progress_bar=False,
            enable_model_summary=False,
            default_root_dir="runs/t",
            logger=[
                {
                    "class_path": "lightning.pytorch.loggers.CSVLogger",
                    "init_args": {"save_dir": "runs/t", "name": "logs", "version": run},
                }
            ],
            callbacks=[
                {
                    "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                    "init_args": {
                        "dirpath": "runs/t/checkpoints",
                        "every_n_train_steps": 1,
                        "save_last": True,
                        "save_top_k": 0,
                    },
                },
                {"class_path": "dlm.training.ExportCheckpoint", "init_args": {"directory": "runs/t/model"}},
            ],
        )
        trainer["callbacks"][0]["init_args"].update(checkpoint or {})
        for dotted, value in changes.items():
            set_key(config, dotted.replace("__", "."), value)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    return make


def dlm_command() -> list[str]:
    """The installed console script beside this interpreter (what a user runs)."""
    script = Path(sys.executable).parent / "dlm"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "dlm.training.cli"]


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without any launcher's variables, one thread per process, offline."""
    launcher = ("SLURM_", "NODE_RANK", "GROUP_RANK", "LOCAL_RANK", "RANK", "WORLD_SIZE", "MASTER_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(launcher)}
    env.update(OMP_NUM_THREADS="1", WANDB_MODE="offline", PYTHONUNBUFFERED="1", **extra)
    return env


@pytest.fixture
def start_dlm():
    """start_dlm(args, cwd, **env) -> Popen of the real `dlm` console script (text pipes); any
    still running at the end of the test is killed."""
    procs = []

    def start(args: list[str], cwd: Path, **env: str) -> subprocess.Popen:
        proc = subprocess.Popen(
            [*dlm_command(), *args],
            cwd=cwd,
            env=clean_env(**env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def finish(proc: subprocess.Popen, timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
    out, err = proc.communicate(timeout=timeout)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.fixture
def run_dlm(start_dlm):
    """run_dlm(args, cwd, **env) -> CompletedProcess of the real `dlm` console script."""

    def run(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
        return finish(start_dlm(args, cwd, **env))

    return run


@pytest.fixture
def wait_dlm():
    """wait_dlm(proc) -> CompletedProcess, within the timeout."""
    return finish


def logged(run_dir: Path, column: str = "train/loss") -> dict[int, float]:
    """{step: value} of one column of a CSVLogger metrics.csv."""
    import csv

    values = {}
    with open(run_dir / "metrics.csv") as f:
        for row in csv.DictReader(f):
            if row.get(column):
                values[int(row["step"])] = float(row[column])
    return values


@pytest.fixture
def read_log():
    return logged
