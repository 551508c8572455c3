"""The real-scale configs and their SLURM templates: every sharded config runs FSDP2
(dlm.training.ShardedStrategy: all processes data parallel, no tensor parallelism, activation
checkpointing per block) in bf16-mixed, the 0.6B AR baseline DDP, and every `dlm fit` template
follows the one documented pattern and states both parallel sizes. (The sharded runs themselves
are tests/test_sharded.py and tests/test_real_scale_miniature.py.)"""

import re
import subprocess
from pathlib import Path

import pytest
import yaml
from jsonargparse import ArgumentParser
from lightning.pytorch.strategies import DDPStrategy, Strategy

from dlm.training import ShardedStrategy

ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = sorted(p for p in ROOT.glob("apps/*/slurm/*.sbatch") if "distill" not in p.name)
REAL = sorted(
    p for p in ROOT.glob("apps/*/configs/*.yaml") if "strategy" in yaml.safe_load(p.read_text())["trainer"]
)


def strategy(config: Path) -> Strategy:
    parser = ArgumentParser()
    parser.add_argument("--strategy", type=Strategy)
    parsed = parser.parse_object({"strategy": yaml.safe_load(config.read_text())["trainer"]["strategy"]})
    return parser.instantiate(parsed).strategy


def test_there_are_real_scale_configs_and_templates():
    names = {f"{p.parent.parent.name}/{p.stem}" for p in TEMPLATES}
    assert {
        "pretrain/qwen3-0.6b",
        "conversion/qwen3-0.6b",
        "trimode/qwen3-1.7b",
        "drafter/qwen3-8b-0.6b",
    } <= names
    assert len(REAL) >= 5


@pytest.mark.parametrize("config", REAL, ids=lambda p: f"{p.parent.parent.name}/{p.name}")
def test_real_scale_strategies(config):
    trainer = yaml.safe_load(config.read_text())["trainer"]
    assert trainer["precision"] == "bf16-mixed"
    built = strategy(config)
    if config.parent.parent.name == "pretrain":  # the AR baseline: model and AdamW fit on a GPU
        assert isinstance(built, DDPStrategy)
    else:
        assert isinstance(built, ShardedStrategy)
        assert built._data_parallel_size == "auto" and built._tensor_parallel_size == 1
        assert built.activation_checkpointing


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: f"{p.parent.parent.name}/{p.name}")
def test_sbatch_templates_follow_one_pattern(template):
    text = template.read_text()
    subprocess.run(["bash", "-n", str(template)], check=True)
    sbatch = dict(re.findall(r"^#SBATCH --([\w-]+)(?:=(\S+))?", text, re.M))
    assert sbatch["ntasks-per-node"] == sbatch["gpus-per-node"], "one task per GPU"
    assert "requeue" in sbatch
    config = re.search(r"^CONFIG=(\S+)$", text, re.M).group(1)
    assert (ROOT / config).is_file()
    run = yaml.safe_load((ROOT / config).read_text())["trainer"]["default_root_dir"]
    assert re.search(rf"^RUN={re.escape(run)}$", text, re.M)
    fit = re.search(r'^srun dlm fit --config "\$\{CONFIG\}" --ckpt_path last \\\n(.+\n)+', text, re.M).group(
        0
    )
    assert '--trainer.num_nodes "${SLURM_JOB_NUM_NODES}"' in fit
    assert '--trainer.devices "${SLURM_NTASKS_PER_NODE}"' in fit
    if isinstance(strategy(ROOT / config), ShardedStrategy):
        assert '--trainer.strategy.init_args.data_parallel_size "${SLURM_NTASKS}"' in fit
        assert "--trainer.strategy.init_args.tensor_parallel_size 1" in fit
    assert "srun --nodes=1 --ntasks=1 --gpus=1 dlm test" in text
