"""bf16-mixed and bf16-true train every tiny config (AR, conversion, tri-mode, drafter) for two
steps with losses close to fp32's, and the configs' decoders then run on the bf16 model at test.

Each config is run as shipped except for size: the tiny random AR checkpoint of conftest.py, its
local corpus, seq_len 64, two steps, one test batch and two short prompts."""

import math
from pathlib import Path

import pytest
import torch
import yaml

from dlm.training.cli import main

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ["pretrain", "conversion", "trimode", "drafter"]
# Two steps from the same initial weights: bf16 rounds logits and gradients to 8 mantissa bits, so
# losses agree to about 1e-2 relative; 2e-2 leaves room while catching a wrong loss or mask.
REL_TOL = 2e-2


def shrink(name: str, tiny_inputs: dict, root: Path, precision: str, accelerator: str = "cpu") -> Path:
    config = yaml.safe_load((ROOT / f"apps/{name}/configs/tiny.yaml").read_text())
    model = config["model"]["init_args"]
    shape = {"dim": 32, "n_layers": 2, "n_heads": 2, "max_seq_len": 64}
    if name == "pretrain":
        model["architecture"] = shape
    else:
        model["init_from"] = str(tiny_inputs["ar"])
        kept = {k: v for k, v in (model.get("architecture") or {}).items() if k not in shape}
        model["architecture"] = kept or None
    if name == "drafter":
        # The target's teacher-forced labels on the corpus instead of distilled data (no dlm-distill).
        model["target"] = str(tiny_inputs["ar"])
        config["data"] = {"class_path": "dlm.training.PackedTextDataModule", "init_args": {}}
    if "evaluation" in model:
        model["evaluation"]["init_args"].update(prompts=2, prompt_tokens=16, max_new_tokens=8)
    config["data"]["init_args"].update(
        corpus=str(tiny_inputs["corpus"]),
        seq_len=64,
        batch_size=4,
        validation_fraction=0.2,
        test_fraction=0.2,
    )
    run = root / precision
    config["trainer"] = {
        "max_steps": 2,
        "accelerator": accelerator,
        "devices": 1,
        "precision": precision,
        "limit_val_batches": 0,
        "limit_test_batches": 1,
        "log_every_n_steps": 1,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "enable_checkpointing": False,
        "default_root_dir": str(run),
        "logger": [
            {
                "class_path": "lightning.pytorch.loggers.CSVLogger",
                "init_args": {"save_dir": str(run), "name": "logs", "version": "v"},
            }
        ],
    }
    root.mkdir(parents=True, exist_ok=True)
    path = root / f"{precision}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def metrics(run: Path) -> dict[str, dict[int, float]]:
    import csv

    values: dict[str, dict[int, float]] = {}
    with open(run / "logs/v/metrics.csv") as f:
        for row in csv.DictReader(f):
            for key, value in row.items():
                if value and key not in ("step", "epoch"):
                    values.setdefault(key, {})[int(row["step"])] = float(value)
    return values


def run_precisions(name, tiny_inputs, tmp_path, monkeypatch, precisions, accelerator="cpu"):
    """{precision: logged metrics} of the 2-step fit (and test) of the shrunk config in each."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_MODE", "offline")
    torch.set_num_threads(1)
    runs = {}
    for precision in ("32-true", *precisions):
        config = shrink(name, tiny_inputs, tmp_path / name, precision, accelerator)
        main(["fit", "--config", str(config)])
        runs[precision] = metrics(tmp_path / name / precision)
    return runs


def check_against_fp32(name, runs, precisions):
    reference = runs["32-true"]["train/loss"]
    assert sorted(reference) == [0, 1]
    has_decoders = (
        "evaluation"
        in yaml.safe_load((ROOT / f"apps/{name}/configs/tiny.yaml").read_text())["model"]["init_args"]
    )
    for precision in precisions:
        losses = runs[precision]["train/loss"]
        assert sorted(losses) == [0, 1], precision
        for step, loss in losses.items():
            assert math.isfinite(loss), (precision, step)
            assert loss == pytest.approx(reference[step], rel=REL_TOL), (precision, step)
        # The test stage ran the config's decoders on the low-precision model (mixed: under autocast).
        decoded = [key for key in runs[precision] if key.startswith("test/") and "tpf" in key.lower()]
        assert bool(decoded) == has_decoders, decoded


@pytest.mark.slow
@pytest.mark.parametrize("name", CONFIGS)
def test_tiny_config_trains_and_decodes_in_bf16(name, tiny_inputs, tmp_path, monkeypatch):
    precisions = ("bf16-mixed", "bf16-true")
    check_against_fp32(name, run_precisions(name, tiny_inputs, tmp_path, monkeypatch, precisions), precisions)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", CONFIGS)
def test_tiny_config_trains_and_decodes_on_gpu_in_fp16_and_bf16(name, tiny_inputs, tmp_path, monkeypatch):
    # On CPU Lightning turns 16-mixed into bf16-mixed: only a GPU tests fp16 (with its grad scaler).
    precisions = ("16-mixed", "bf16-mixed")
    runs = run_precisions(name, tiny_inputs, tmp_path, monkeypatch, precisions, accelerator="gpu")
    check_against_fp32(name, runs, precisions)
