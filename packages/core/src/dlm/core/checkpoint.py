"""Our checkpoint format and one loader for everything a researcher points at.

A dlm checkpoint is a directory: dlm.json (model config + tokenizer spec), model.safetensors, and
for HF tokenizers tokenizer.json beside it. It is written to a temporary sibling and renamed into
place, so a crash never leaves a half-written checkpoint.

`load_model(path)` accepts a dlm directory, an HF directory (config.json with model_type) or a
Lightning .ckpt written by dlm.training, whose "dlm" entry holds the same record as dlm.json and
whose trained model's weights sit under the "model." prefix of the state dict.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from dlm.core.atomic import staged_directory
from dlm.core.config import ModelConfig
from dlm.core.model import Transformer
from dlm.core.tokenizers import tokenizer_from_spec

RECORD = "dlm.json"
WEIGHTS = "model.safetensors"


def checkpoint_record(model: Transformer, tokenizer) -> dict[str, Any]:
    return {"format": "dlm", "version": 1, "model": model.config.to_dict(), "tokenizer": tokenizer.to_spec()}


def save_checkpoint(model: Transformer, tokenizer, directory: str | Path) -> Path:
    """Write model + tokenizer to `directory` atomically (replacing an existing checkpoint there)."""
    with staged_directory(directory) as tmp:
        record = checkpoint_record(model, tokenizer)
        record["tokenizer"].pop("json", None)
        (tmp / RECORD).write_text(json.dumps(record, indent=2))
        state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
        if model.config.tie_embeddings:
            state.pop("lm_head.weight", None)
        save_file(state, str(tmp / WEIGHTS))
        if hasattr(tokenizer, "save"):
            tokenizer.save(tmp)
    return Path(directory)


def model_from_record(
    record: dict[str, Any], state: dict[str, torch.Tensor], source: str
) -> tuple[Transformer, Any]:
    config = ModelConfig.from_dict(record["model"])
    model = Transformer.empty(config, dtype=next(iter(state.values())).dtype)
    load_weights(model, state, source)
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
    record = json.loads(record_file.read_text())
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


def load_lightning(file: str | Path) -> tuple[Transformer, Any]:
    file = Path(file)
    try:
        ckpt = torch.load(file, map_location="cpu", weights_only=False)
    except Exception as err:
        raise ValueError(f"{file}: not a readable checkpoint ({err})") from None
    if "dlm" not in ckpt:
        raise ValueError(
            f"{file}: a Lightning checkpoint without a 'dlm' record (not written by dlm.training)"
        )
    state = {k.removeprefix("model."): v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    return model_from_record(ckpt["dlm"], state, str(file))


def load_model(path: str | Path) -> tuple[Transformer, Any]:
    """(model, tokenizer) from a dlm checkpoint directory, an HF directory or a dlm Lightning .ckpt."""
    path = Path(path)
    if path.is_file():
        return load_lightning(path)
    if (path / RECORD).is_file():
        return load_checkpoint(path)
    if (path / "config.json").is_file():
        from dlm.core.hf import from_hf

        return from_hf(path)
    raise FileNotFoundError(
        f"{path}: expected a dlm checkpoint directory ({RECORD}), an HF directory (config.json) or a .ckpt file"
    )
