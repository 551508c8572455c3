"""Every shipped YAML parses against the real `dlm` CLI, and the tiny ones run end to end
(pretrain -> conversion) with fast_dev_run in a temporary directory."""

import os
import shutil
from pathlib import Path

import pytest

from dlm.training.cli import main

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted(ROOT.glob("apps/*/configs/*.yaml"))
# Overlays are ablation variants (apps/*/ablations/*.yaml): tests/test_ablations.py parses them.
TINY_CHAIN = [ROOT / "apps/pretrain/configs/tiny.yaml", ROOT / "apps/conversion/configs/tiny.yaml"]


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DLM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb"))


DISTILL = sorted(ROOT.glob("apps/*/distill/*.yaml"))


@pytest.mark.parametrize("config", DISTILL, ids=lambda p: p.name)
def test_distill_config_parses(config):
    """Every dlm-distill config parses and builds its decoder and prompt source (nothing runs)."""
    from dlm.training.drafter.distill import parser

    p = parser()
    built = p.instantiate_classes(p.parse_args(["--config", str(config)]))
    assert type(built.decoder).__name__ == "ARDecoder" and built.target and built.out


DECODE = sorted(ROOT.glob("apps/*/decode/*.yaml"))


@pytest.mark.parametrize("config", DECODE, ids=lambda p: p.name)
def test_decode_config_parses(config):
    """Every dlm-decode / dlm-eval decoders config parses against dlm-decode and builds its decoders
    (nothing is loaded or decoded)."""
    from dlm.decoding.cli import read

    _, _, init, decoders = read(["--checkpoint", "x", "--config", str(config)])
    assert decoders and init["baseline"] in decoders
    assert all(callable(getattr(d, "decode", None)) for d in decoders.values())


def test_configs_are_shipped():
    assert set(TINY_CHAIN) <= set(CONFIGS)
    assert ROOT / "apps/conversion/configs/qwen3-0.6b.yaml" in CONFIGS


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: f"{p.parent.parent.name}/{p.name}")
def test_config_parses(config, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(config), "--print_config"])
    assert exit_info.value.code in (0, None)
    printed = capsys.readouterr().out
    assert "class_path: dlm.training." in printed
    assert os.environ["WANDB_MODE"] == "offline"


def test_unknown_class_path_is_the_cli_error(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        (ROOT / "apps/conversion/configs/tiny.yaml")
        .read_text()
        .replace("dlm.training.BlockCleanPattern", "dlm.training.NoSuchPattern")
    )
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(bad), "--print_config"])
    assert exit_info.value.code == 2
    assert "dlm.training.NoSuchPattern" in capsys.readouterr().err


@pytest.mark.slow
def test_tiny_pretrain_then_conversion_fast_dev_run(tmp_path):
    main(["fit", "--config", str(TINY_CHAIN[0]), "--trainer.fast_dev_run", "true"])
    exported = tmp_path / "runs/pretrain-tiny/model"
    assert (exported / "dlm.json").is_file()
    main(["fit", "--config", str(TINY_CHAIN[1]), "--trainer.fast_dev_run", "true"])
    assert (tmp_path / "runs/conversion-tiny/model/dlm.json").is_file()
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(TINY_CHAIN[1]), "--data.init_args.seq_len", "250"])
    assert exit_info.value.code == "dlm: error: ValueError: seq_len 250 is not a multiple of block_size 16"
    shutil.rmtree(exported)
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(TINY_CHAIN[1]), "--trainer.fast_dev_run", "true"])
    assert exit_info.value.code == (
        "dlm: error: FileNotFoundError: init_from: runs/pretrain-tiny/model does not exist"
    )


def test_bad_input_is_one_line(tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(TINY_CHAIN[0]), "--data.init_args.corpus", "missing/*.jsonl"])
    assert (
        exit_info.value.code
        == "dlm: error: FileNotFoundError: no files match the corpus pattern 'missing/*.jsonl'"
    )
