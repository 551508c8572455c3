"""Every real-scale config (apps/*/configs/ with a trainer.strategy), run as shipped except for size
by the commands of its SLURM template, under simulated SLURM variables, on CPU.

Shipped: the module, objective, decoders, strategy (ShardedStrategy = FSDP2, or DDP), precision
(bf16-mixed), streaming and checkpoint callbacks. Changed for size: init_from / target are tiny
random HF checkpoints of the same family written by transformers (Qwen3, Mistral; one per family,
shared), the hub corpus is local jsonl files read through the same `streaming: true` path,
seq_len 64, batch 2 per process, 2 then 3 steps, 1 validation and test batch, 2 short prompts, no
data-loader workers, gradient accumulation 1, CSV logging only, accelerator cpu.

Each template's `srun dlm fit` line runs as two processes that SLURM would start (SLURM_NTASKS=2,
SLURM_PROCID, SLURM_LOCALID, ...): Lightning must take each rank and the world size from them. The
line runs twice, as a requeued job does: the second run resumes from `last` (its log starts at
step 2) and exports the model. Then the template's one-GPU `dlm test` line runs on one process. The
drafter's distillation array runs first, as two array tasks.
"""

import json
import os
import re
import shlex
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
REAL = sorted(
    p for p in ROOT.glob("apps/*/configs/*.yaml") if "strategy" in yaml.safe_load(p.read_text())["trainer"]
)
TIMEOUT = 300
WORDS = ["<unk>", "<eos>", "doc", ":"] + [str(i) for i in range(40)] + [f"w{i}" for i in range(13)]


def write_hf(directory: Path, family: str) -> Path:
    """A tiny random checkpoint of `family` written by transformers, with a WordLevel tokenizer."""
    import tokenizers
    import torch
    import transformers

    sizes = dict(
        vocab_size=64,  # rows past the tokenizer's 57, as real checkpoints pad: [MASK] takes one
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=family == "qwen3",
    )
    if family == "mistral":
        sizes["sliding_window"] = None
    torch.manual_seed(0)
    config = transformers.AutoConfig.for_model(family, **sizes)
    transformers.AutoModelForCausalLM.from_config(config).save_pretrained(directory)
    tok = tokenizers.Tokenizer(
        tokenizers.models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>")
    )
    tok.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    tok.add_special_tokens(["<eos>"])
    tok.save(str(directory / "tokenizer.json"))
    (directory / "tokenizer_config.json").write_text(json.dumps({"eos_token": "<eos>", "unk_token": "<unk>"}))
    return directory


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("miniature")
    corpus = root / "corpus"
    corpus.mkdir()
    rows = [
        {"id": f"doc{i}", "text": f"doc {i}: " + " ".join(f"w{(i * 7 + j) % 13}" for j in range(60))}
        for i in range(40)
    ]
    for part in range(2):  # two files: the stream reads a directory of shards
        (corpus / f"part{part}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[part::2]))
    return {
        "qwen3": write_hf(root / "qwen3", "qwen3"),
        "mistral": write_hf(root / "mistral", "mistral"),
        "corpus": corpus,
    }


def shrink(config: dict, checkpoint: Path, corpus: Path) -> dict:
    model = config["model"]["init_args"]
    for key in ("init_from", "target"):
        if key in model:
            model[key] = str(checkpoint)
    if "evaluation" in model:
        model["evaluation"]["init_args"].update(prompts=2, prompt_tokens=8, max_new_tokens=8)
    data = config["data"]["init_args"]
    data.update(seq_len=64, batch_size=2, num_workers=0)
    if "corpus" in data:
        assert data["streaming"] is True
        data["corpus"] = str(corpus)
    trainer = config["trainer"]
    trainer.update(
        accelerator="cpu",
        max_steps=2,
        val_check_interval=2,
        limit_val_batches=1,
        limit_test_batches=1,
        accumulate_grad_batches=1,
        log_every_n_steps=1,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    root = trainer["default_root_dir"]
    trainer["logger"] = [
        {"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": root, "name": "logs"}}
    ]
    for callback in trainer["callbacks"]:
        if callback["class_path"].endswith("ModelCheckpoint"):
            callback["init_args"]["every_n_train_steps"] = 1
    return config


def shrink_distill(config: dict, checkpoint: Path, corpus: Path) -> dict:
    config.update(
        target=str(checkpoint),
        corpus=str(corpus),
        samples={"train": 8, "validation": 2, "test": 2},  # the tiny corpus holds 3 validation prefixes
        prefix_len=33,  # the anchor of the first scored block of 16 at position 32, as 257 at 256
        continuation_len=31,
        shard_size=4,
        batch_size=4,
        device="cpu",
    )
    return config


def srun_lines(template: Path) -> list[str]:
    """The template's commands after `srun [options]`, continuation lines joined."""
    text = template.read_text().replace("\\\n", " ")
    return [m.group(1) for m in re.finditer(r"^srun (?:--\S+ )*(dlm[\w-]* .+)$", text, re.M)]


def slurm_env(tmp: Path, ntasks: int, rank: int, port: int, **extra: str) -> dict[str, str]:
    launcher = ("SLURM_", "NODE_RANK", "GROUP_RANK", "LOCAL_RANK", "RANK", "WORLD_SIZE", "MASTER_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(launcher)}
    env.update(
        OMP_NUM_THREADS="1",
        WANDB_MODE="offline",
        DLM_CACHE_DIR=str(tmp / "cache"),
        SLURM_JOB_ID="4242",
        SLURM_JOB_NAME="dlm-miniature",
        SLURM_JOB_NUM_NODES="1",
        SLURM_NNODES="1",
        SLURM_NODEID="0",
        SLURM_NODELIST="localhost",
        SLURM_NTASKS=str(ntasks),
        SLURM_NTASKS_PER_NODE=str(ntasks),
        SLURM_PROCID=str(rank),
        SLURM_LOCALID=str(rank),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        **extra,
    )
    return env


def start(
    command: str, values: dict[str, str], cwd: Path, ntasks: int, **extra: str
) -> list[subprocess.Popen]:
    """`command` (the template's, ${VAR} filled from `values` and the SLURM variables) started as
    `ntasks` SLURM tasks."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = []
    for rank in range(ntasks):
        env = slurm_env(cwd, ntasks, rank, port, **extra)
        known = {**env, **values}
        line = re.sub(r"\$\{(\w+)\}", lambda m, known=known: known[m.group(1)], command)
        argv = shlex.split(line)
        script = Path(sys.executable).parent / argv[0]
        procs.append(
            subprocess.Popen(
                [str(script), *argv[1:]],
                cwd=cwd,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    return procs


def finish(procs: list[subprocess.Popen]) -> list[str]:
    """Each task's output, after checking it succeeded."""
    outputs = [p.communicate(timeout=TIMEOUT)[0] for p in procs]
    for p, out in zip(procs, outputs, strict=True):
        assert p.returncode == 0, out[-4000:]
    return outputs


def run(command: str, values: dict[str, str], cwd: Path, ntasks: int, **extra: str) -> list[str]:
    return finish(start(command, values, cwd, ntasks, **extra))


def steps_logged(run_dir: Path) -> list[list[int]]:
    """Per CSVLogger version (in order), the steps with a train/loss."""
    import csv

    found = []
    for metrics in sorted(run_dir.glob("logs/version_*/metrics.csv")):
        with open(metrics) as f:
            found.append(sorted({int(r["step"]) for r in csv.DictReader(f) if r.get("train/loss")}))
    return found


@pytest.mark.slow
@pytest.mark.parametrize("config", REAL, ids=lambda p: f"{p.parent.parent.name}/{p.stem}")
def test_real_scale_config_in_miniature(config, inputs, tmp_path):
    family = "mistral" if "ministral" in config.name else "qwen3"
    template = ROOT / f"apps/{config.parent.parent.name}/slurm/{config.stem}.sbatch"
    shipped = yaml.safe_load(config.read_text())
    small = tmp_path / "config.yaml"
    small.write_text(yaml.safe_dump(shrink(shipped, inputs[family], inputs["corpus"]), sort_keys=False))
    run_dir = tmp_path / shipped["trainer"]["default_root_dir"]
    values = {"CONFIG": str(small), "RUN": shipped["trainer"]["default_root_dir"]}
    if shipped["data"]["class_path"].endswith("DistilledDataModule"):
        distill = yaml.safe_load((ROOT / "apps/drafter/distill/qwen3-8b.yaml").read_text())
        (tmp_path / "distill.yaml").write_text(
            yaml.safe_dump(shrink_distill(distill, inputs[family], inputs["corpus"]))
        )
        array = ROOT / "apps/drafter/slurm/distill-qwen3-8b.sbatch"
        (line,) = re.findall(r"^(dlm-distill .+)$", array.read_text().replace("\\\n", " "), re.M)
        line = line.replace("apps/drafter/distill/qwen3-8b.yaml", str(tmp_path / "distill.yaml"))
        tasks = [
            start(line, {}, tmp_path, 1, SLURM_ARRAY_TASK_ID=str(t), SLURM_ARRAY_TASK_COUNT="2")
            for t in range(2)
        ]
        [finish(procs) for procs in tasks]  # two array tasks at once, as SLURM runs them
    fit, test = srun_lines(template)
    assert fit.startswith("dlm fit") and test.startswith("dlm test")
    outputs = run(fit, values, tmp_path, 2)
    sharded = shipped["trainer"]["strategy"]["class_path"] == "dlm.training.ShardedStrategy"
    for rank, out in enumerate(outputs):  # Lightning took the rank and world size from SLURM
        assert f"GLOBAL_RANK: {rank}, MEMBER: {rank + 1}/2" in out, out[-2000:]
        assert (f"rank {rank}: model sharded over 2 processes; peak host memory" in out) == sharded
    run(fit + " --trainer.max_steps 3", values, tmp_path, 2)  # the requeued job: resumes from last
    assert steps_logged(run_dir) == [[0, 1], [2]]
    last = run_dir / "checkpoints/last.ckpt"
    assert last.is_dir() == sharded
    assert (run_dir / "model/dlm.json").is_file()
    (out,) = run(test, values, tmp_path, 1)
    assert "test/" in out, out[-2000:]
