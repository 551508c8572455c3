"""Our checkpoint format and one loader for everything a researcher points at.

A dlm checkpoint is a directory: dlm.json (model config + tokenizer spec, and how the model was
trained when dlm.training wrote it), model.safetensors, and for HF tokenizers tokenizer.json beside it. It is written to a temporary sibling and renamed into
place, so a crash never leaves a half-written checkpoint.

`load_model(path)` accepts a dlm directory, an HF directory (config.json with model_type) or a
Lightning .ckpt written by dlm.training, whose "dlm" entry holds the same record as dlm.json and
whose trained model's weights sit under the "model." prefix of the state dict. A .ckpt is read with
torch.load(weights_only=True): tensors, containers and plain values, all dlm writes; a file holding
anything else (a pickled callable that would run while loading) is refused before it runs.
"""

from __future__ import annotations

import json
import pickle
import re
import zipfile
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal, get_args

import torch
from safetensors.torch import load_file, save_file

from dlm.core.adapter import adapter_from_record, add_adapter
from dlm.core.atomic import staged_directory
from dlm.core.config import ModelConfig
from dlm.core.model import Transformer
from dlm.core.tokenizers import tokenizer_from_spec

RECORD = "dlm.json"
WEIGHTS = "model.safetensors"

CleanStream = Literal["causal", "block"]
"""How a model's clean stream attends: "causal" (token-causal, the AR forward) or "block"
(block-causal). The one spelling of the kind, in a TrainingRecord, a pattern and a block decoder."""

# The attribute of a loaded model that holds its TrainingRecord (see training_of).
TRAINING_ATTR = "dlm_training"


@dataclass(frozen=True)
class TrainingRecord:
    """How a checkpoint's model was trained, so that a decoder can refuse (or adapt to) a layout the
    model never learned. dlm.training writes it as the record's "training" entry; models from
    elsewhere (HF, untrained) have none. A new field needs a default, so older records still read."""

    module: str
    """The LightningModule class that trained the model, e.g. "DrafterModule"."""
    block_size: int | None = None
    """The diffusion block size B; None for an AR module."""
    k: int | None = None
    """Draft positions scored per block (DrafterModule); None elsewhere."""
    token_shift: bool = False
    """Whether logit i was trained to predict token i + 1."""
    clean: CleanStream | None = None
    """How the clean stream [x_0] attended in training: "causal" (token-causal, the AR forward:
    tri-mode, the drafter), "block" (block-causal: conversion's BlockCleanPattern) or None (no
    clean stream: AR, a bidirectional pattern). A block decoder's cache must be written the same way."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any, source: str = "the checkpoint") -> TrainingRecord:
        """The record from its JSON form; unknown keys (a newer writer's) are ignored."""
        if not isinstance(data, dict) or not isinstance(data.get("module"), str):
            raise ValueError(
                f"{source}: the 'training' record must be an object with a 'module' name, got {data!r}"
            )
        kinds = {"block_size": int, "k": int, "token_shift": bool, "clean": str}
        for name, kind in kinds.items():
            value = data.get(name)
            if value is not None and (
                not isinstance(value, kind) or (kind is int and isinstance(value, bool))
            ):
                raise ValueError(
                    f"{source}: the 'training' record's {name} must be {kind.__name__}, got {value!r}"
                )
        if data.get("clean") not in (None, *get_args(CleanStream)):
            raise ValueError(
                f"{source}: the 'training' record's clean must be 'causal', 'block' or null, got {data['clean']!r}"
            )
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})


def training_of(model: Any) -> TrainingRecord | None:
    """The TrainingRecord a loaded (or training) model carries, None when it has none."""
    return getattr(model, TRAINING_ATTR, None)


def set_training(model: Any, record: TrainingRecord | None) -> None:
    setattr(model, TRAINING_ATTR, record)


def checkpoint_record(
    model: Transformer, tokenizer, training: TrainingRecord | None = None
) -> dict[str, Any]:
    record = {
        "format": "dlm",
        "version": 1,
        "model": model.config.to_dict(),
        "tokenizer": tokenizer.to_spec(),
    }
    if training is not None:
        record["training"] = training.to_dict()
    adapter = getattr(model, "adapter", None)
    if adapter is not None:
        record["adapter"] = asdict(adapter)
    return record


def save_checkpoint(
    model: Transformer, tokenizer, directory: str | Path, training: TrainingRecord | None = None
) -> Path:
    """Write model + tokenizer (+ how it was trained) to `directory` atomically, replacing an
    existing checkpoint there. Pass training=training_of(model) to keep a loaded model's record."""
    with staged_directory(directory) as tmp:
        record = checkpoint_record(model, tokenizer, training)
        record["tokenizer"].pop("json", None)
        (tmp / RECORD).write_text(json.dumps(record, indent=2))
        state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
        if model.config.tie_embeddings:
            state.pop("lm_head.weight", None)
        save_file(state, str(tmp / WEIGHTS))
        if hasattr(tokenizer, "save"):
            tokenizer.save(tmp)
    return Path(directory)


def check_record(record: Any, source: str) -> None:
    if not isinstance(record, dict) or not all(
        isinstance(record.get(k), dict) for k in ("model", "tokenizer")
    ):
        raise ValueError(f"{source}: not a dlm checkpoint record (expected 'model' and 'tokenizer' objects)")


def model_from_record(
    record: dict[str, Any], state: dict[str, torch.Tensor], source: str
) -> tuple[Transformer, Any]:
    check_record(record, source)
    config = ModelConfig.from_dict(record["model"])
    training = record.get("training")
    training = TrainingRecord.from_dict(training, source) if training is not None else None
    model = Transformer.empty(config, dtype=next(iter(state.values())).dtype)
    if record.get("adapter") is not None:
        add_adapter(model, adapter_from_record(record["adapter"], source))
    load_weights(model, state, source)
    set_training(model, training)
    return model, tokenizer_from_spec(record["tokenizer"])


def load_weights(model: Transformer, state: dict[str, torch.Tensor], source: str) -> None:
    """Copy `state` into `model`, naming the first missing, unexpected or mis-shaped tensor."""
    expected = model.state_dict()
    if model.config.tie_embeddings:
        state = {k: v for k, v in state.items() if k != "lm_head.weight"}
        expected = {k: v for k, v in expected.items() if k != "lm_head.weight"}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing:
        raise ValueError(f"{source}: missing weight {missing[0]!r} ({len(missing)} missing in all)")
    if unexpected:
        raise ValueError(
            f"{source}: unexpected weight {unexpected[0]!r} ({len(unexpected)} unexpected in all)"
        )
    for name, tensor in state.items():
        if tensor.shape != expected[name].shape:
            raise ValueError(
                f"{source}: weight {name!r} has shape {tuple(tensor.shape)}, the config needs {tuple(expected[name].shape)}"
            )
    model.load_state_dict(state, strict=False)


def load_checkpoint(directory: str | Path) -> tuple[Transformer, Any]:
    directory = Path(directory)
    record_file, weights = directory / RECORD, directory / WEIGHTS
    if not record_file.is_file() or not weights.is_file():
        raise FileNotFoundError(f"{directory} is not a dlm checkpoint: expected {RECORD} and {WEIGHTS}")
    try:
        record = json.loads(record_file.read_text(encoding="utf-8"))
    except ValueError as err:  # JSONDecodeError and UnicodeDecodeError
        raise ValueError(f"{record_file}: not valid JSON ({err})") from None
    check_record(record, str(record_file))
    if record["tokenizer"].get("kind") == "hf":
        tok_file = directory / "tokenizer.json"
        if not tok_file.is_file():
            raise FileNotFoundError(
                f"{directory}: the checkpoint's HF tokenizer file {tok_file.name} is missing"
            )
        record["tokenizer"]["json"] = tok_file.read_text()
    return model_from_record(record, read_safetensors(weights), str(directory))


def read_safetensors(file: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(file))
    except Exception as err:  # safetensors raises several types for damaged files
        raise ValueError(f"{file}: not a readable safetensors file ({err})") from None


def read_torch_file(file: str | Path, map_location: Any = "cpu", mmap: bool = False) -> Any:
    """torch.load(file, weights_only=True), with a one-line ValueError for a file it refuses (naming
    what the file holds) or cannot read. Every torch.save file dlm reads goes through here; with
    mmap the tensors stay on disk, so checking a file of any size is quick."""
    if not zipfile.is_zipfile(file):  # torch.save has written zip archives since torch 1.6
        raise ValueError(f"{file}: not a readable checkpoint (not a torch.save zip archive)")
    try:
        return torch.load(file, map_location=map_location, weights_only=True, mmap=mmap)
    except Exception as err:  # torch.load raises several types for damaged files
        found = re.search(r"GLOBAL ([\w.]+)", str(err))
        if isinstance(err, pickle.UnpicklingError) and found:
            raise ValueError(
                f"{file}: refused to load: it holds a pickled {found.group(1)}, not only the tensors and "
                "plain values dlm writes (dlm loads with torch.load(weights_only=True), which runs no "
                "code from a file)"
            ) from None
        raise ValueError(f"{file}: not a readable checkpoint ({_reason(err)})") from None


def _reason(err: Exception) -> str:
    """The informative line of a torch.load error (torch wraps unpickling errors in advice)."""
    advice = ("Weights only load failed", "Please file an issue", "Check the documentation")
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith(advice)]
    return lines[0] if lines else type(err).__name__


SHARDED_METADATA = "meta.pt"  # beside the shard files of a distributed (FSDP2) Lightning checkpoint


def is_sharded_checkpoint(path: str | Path) -> bool:
    return Path(path).is_dir() and (Path(path) / SHARDED_METADATA).is_file()


def read_sharded_checkpoint(folder: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """A distributed Lightning checkpoint folder (torch.distributed.checkpoint shards + meta.pt) as one
    checkpoint dict, on one process: meta.pt's contents and the whole `state_dict` (the optimizer's
    shards are not read). Nothing in the folder runs code (dlm.core.distributed_checkpoint)."""
    from dlm.core.distributed_checkpoint import load_distributed

    folder = Path(folder)
    checkpoint = read_torch_file(folder / SHARDED_METADATA, map_location)
    checkpoint["state_dict"] = load_distributed(folder, {"state_dict"})["state_dict"]
    return checkpoint


def load_lightning(file: str | Path) -> tuple[Transformer, Any]:
    """(model, tokenizer) of a dlm Lightning checkpoint: a .ckpt file or a distributed checkpoint folder."""
    file = Path(file)
    ckpt = read_sharded_checkpoint(file) if file.is_dir() else read_torch_file(file)
    if not isinstance(ckpt, dict) or "dlm" not in ckpt:
        raise ValueError(
            f"{file}: a Lightning checkpoint without a 'dlm' record (not written by dlm.training)"
        )
    if not isinstance(ckpt.get("state_dict"), dict):
        raise ValueError(f"{file}: a checkpoint without a 'state_dict' (not written by Lightning)")
    state = {k.removeprefix("model."): v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    return model_from_record(ckpt["dlm"], state, str(file))


def load_model(path: str | Path) -> tuple[Transformer, Any]:
    """(model, tokenizer) from a dlm checkpoint directory, an HF directory or a dlm Lightning checkpoint
    (.ckpt file or distributed checkpoint folder)."""
    path = Path(path)
    if path.is_file() or is_sharded_checkpoint(path):
        return load_lightning(path)
    if (path / RECORD).is_file():
        return load_checkpoint(path)
    if (path / "config.json").is_file():
        from dlm.core.hf import from_hf

        return from_hf(path)
    raise FileNotFoundError(
        f"{path}: expected a dlm checkpoint directory ({RECORD}), an HF directory (config.json) or a .ckpt file"
    )
