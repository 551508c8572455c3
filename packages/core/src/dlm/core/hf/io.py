"""from_hf / to_hf: HF (transformers) Llama, Qwen2, Qwen3 and Mistral checkpoints to and from our model.

An HF directory holds config.json, model.safetensors (or shards listed by
model.safetensors.index.json) and tokenizer.json + tokenizer_config.json. transformers is never
imported here: config.json is read as data (config_map.py, families.py) and the weights renamed
(weights.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from dlm.core.atomic import staged_directory
from dlm.core.checkpoint import load_weights
from dlm.core.config import ModelConfig
from dlm.core.hf.config_map import checkpoint_dtype, hf_config_from_model, model_config_from_hf
from dlm.core.hf.weights import read_hf_state, write_hf_state
from dlm.core.model import Transformer
from dlm.core.tokenizers import ByteTokenizer, HFTokenizer

CONFIG = "config.json"
TOKENIZER = "tokenizer.json"


def from_hf(
    directory: str | Path,
    dtype: torch.dtype | None = None,
    add_mask_token: bool = True,
    tokenizer: bool = True,
) -> tuple[Transformer, HFTokenizer | None]:
    """(model, tokenizer) from an HF checkpoint directory, on the CPU.

    dtype: None keeps the checkpoint's (config.json "dtype"/"torch_dtype", else the stored
    tensors'); otherwise the weights are cast. add_mask_token: when the tokenizer has no mask token,
    append "<|mask|>" (id = tokenizer vocabulary size) and give the model that row via
    model.add_mask_token (a new row, or an unused one when the checkpoint's vocab_size is larger),
    initialised to the mean embedding. tokenizer=False loads the weights alone and returns None for
    the tokenizer; otherwise a missing tokenizer.json is an error.
    """
    directory = Path(directory)
    source = str(directory)
    config_file = directory / CONFIG
    if not config_file.is_file():
        raise FileNotFoundError(f"{directory}: no {CONFIG}; expected an HF checkpoint directory")
    try:
        cfg = json.loads(config_file.read_text())
    except ValueError as err:
        raise ValueError(f"{config_file}: not valid JSON ({err})") from None
    config = model_config_from_hf(cfg, source)
    tok = _read_tokenizer(directory, config) if tokenizer else None
    if tok is not None and tok.mask_id is not None:
        config = config.replace(mask_token_id=tok.mask_id)
    state = read_hf_state(directory)
    stored = state["embed.weight"].dtype if "embed.weight" in state else torch.float32
    model = Transformer.empty(config, dtype or checkpoint_dtype(cfg, source) or stored)
    load_weights(model, state, source)
    if tok is not None and tok.mask_id is None and add_mask_token:
        model.add_mask_token(tok.add_mask_token())
    return model, tok


def _read_tokenizer(directory: Path, config: ModelConfig) -> HFTokenizer:
    if not (directory / TOKENIZER).is_file():
        raise FileNotFoundError(
            f"{directory}: no {TOKENIZER}; pass tokenizer=False to load the weights without a tokenizer"
        )
    tok = HFTokenizer.from_directory(directory, add_mask_token=False)
    if tok.vocab_size > config.vocab_size:
        raise ValueError(
            f"{directory}: the tokenizer has {tok.vocab_size} tokens but the model's vocab_size is "
            f"{config.vocab_size}; its ids would fall outside the embedding"
        )
    return tok


def to_hf(model: Transformer, tokenizer: Any, directory: str | Path) -> Path:
    """Write `model` and `tokenizer` as an HF checkpoint directory that transformers loads.

    The family is config.extra["model_type"] when the model came from HF, otherwise the one its
    config implies (qwen2 with QKV bias, qwen3 with q/k norm, else llama). A ByteTokenizer is
    written as an equivalent byte-level tokenizer.json. The directory is written to a temporary
    sibling and renamed into place (an existing one is replaced).
    """
    hf_tok = tokenizer.as_hf() if isinstance(tokenizer, ByteTokenizer) else tokenizer
    if not isinstance(hf_tok, HFTokenizer):
        raise TypeError(f"to_hf needs a ByteTokenizer or HFTokenizer, got {type(tokenizer).__name__}")
    config = model.config
    if hf_tok.vocab_size > config.vocab_size:
        raise ValueError(
            f"to_hf: the tokenizer has {hf_tok.vocab_size} tokens, more than the model's "
            f"vocab_size {config.vocab_size}"
        )
    if config.mask_token_id is not None and hf_tok.mask_id != config.mask_token_id:
        raise ValueError(
            f"to_hf: the model's mask_token_id is {config.mask_token_id} but the tokenizer's mask "
            f"token is {hf_tok.mask_id}"
        )
    special_ids = {"bos": hf_tok.bos_id, "eos": hf_tok.eos_id, "pad": hf_tok.pad_id}
    hf_config = hf_config_from_model(config, model.embed.weight.dtype, special_ids)
    directory = Path(directory)
    with staged_directory(directory) as tmp:
        (tmp / CONFIG).write_text(json.dumps(hf_config, indent=2))
        write_hf_state(model.state_dict(), config.tie_embeddings, tmp)
        hf_tok.save(tmp)
    return directory
