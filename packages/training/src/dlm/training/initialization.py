"""The network a module trains: built from scratch, or loaded from a checkpoint, with its tokenizer."""

from __future__ import annotations

from pathlib import Path

import torch

from dlm.core import ByteTokenizer, Transformer, from_hf, load_model
from dlm.core.checkpoint import RECORD, load_weights
from dlm.core.protocols import Tokenizer
from dlm.training.architecture import Architecture


def load_initial(path: str) -> tuple[Transformer, Tokenizer]:
    """(model, tokenizer) of a dlm directory, HF directory or dlm .ckpt, in float32, as stored
    (no mask token is added)."""
    source = Path(path)
    if not source.exists():
        raise FileNotFoundError(f"init_from: {path} does not exist")
    if source.is_dir() and not (source / RECORD).is_file() and (source / "config.json").is_file():
        model, tokenizer = from_hf(source, dtype=torch.float32, add_mask_token=False)
    else:
        model, tokenizer = load_model(source)
    return model.float(), tokenizer


def initial_model(
    architecture: Architecture | None,
    init_from: str | None,
    tokenizer: Tokenizer | None,
) -> tuple[Transformer, Tokenizer]:
    """From `init_from` when given (architecture may only confirm its shapes or override
    token_shift / attention_backend / max_seq_len), else a fresh model of `architecture` for
    `tokenizer` (ByteTokenizer by default)."""
    architecture = architecture or Architecture()
    if init_from is None:
        tokenizer = tokenizer or ByteTokenizer()
        return Transformer(architecture.build(tokenizer.vocab_size)), tokenizer
    model, own = load_initial(init_from)
    if tokenizer is not None and tokenizer.to_spec() != own.to_spec():
        raise ValueError(
            f"init_from {init_from} brings its own tokenizer ({own.to_spec().get('kind')}); "
            "the configured tokenizer differs from it: leave `tokenizer` unset"
        )
    if own.vocab_size > model.config.vocab_size:
        raise ValueError(
            f"{init_from}: the tokenizer has {own.vocab_size} tokens but the model only "
            f"{model.config.vocab_size} embedding rows"
        )
    config = architecture.apply(model.config, init_from)
    if config != model.config:
        rebuilt = Transformer(config)
        load_weights(rebuilt, model.state_dict(), init_from)
        model = rebuilt
    return model, own


def ensure_mask_token(model: Transformer, tokenizer: Tokenizer, add_mask_token: bool) -> None:
    """Give the model (and, when needed, the tokenizer) a [MASK] token for diffusion training.

    A tokenizer without one gets "<|mask|>" appended when add_mask_token is set; the model then
    takes that id as its mask token, growing or reusing an embedding row initialised to the mean
    embedding (a row an AR model never trained on, such as ByteTokenizer's [MASK], is reset too).
    """
    if tokenizer.mask_id is None:
        if not add_mask_token or not hasattr(tokenizer, "add_mask_token"):
            raise ValueError(
                "the tokenizer has no mask token and add_mask_token is false; set add_mask_token: true "
                "or use a tokenizer with a mask token"
            )
        tokenizer.add_mask_token()
    if model.config.mask_token_id != tokenizer.mask_id:
        model.add_mask_token(tokenizer.mask_id)
