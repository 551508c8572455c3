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
    """From `init_from` when given (architecture may only confirm its shapes, override
    token_shift / attention_backend / max_seq_len, or keep the first n_layers blocks), else a fresh model of `architecture` for
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
        load_weights(rebuilt, kept_layers(model.state_dict(), config.n_layers), init_from)
        model = rebuilt
    return model, own


def kept_layers(state: dict[str, torch.Tensor], n_layers: int) -> dict[str, torch.Tensor]:
    """`state` without the weights of blocks n_layers and above (`layers.<i>.`)."""
    return {
        name: tensor
        for name, tensor in state.items()
        if not (name.startswith("layers.") and int(name.split(".")[1]) >= n_layers)
    }


def ensure_mask_token(
    model: Transformer, tokenizer: Tokenizer, add_mask_token: bool, mask_token: str | None = None
) -> None:
    """Give the model (and, when needed, the tokenizer) a [MASK] token for diffusion training.

    `mask_token` names an existing token of the tokenizer (an unused special token such as
    SmolLM2's "<empty_output>") to serve as [MASK]: the vocabulary keeps its size, so a drafter
    keeps its target's rows. Otherwise a tokenizer without one gets "<|mask|>" appended when
    add_mask_token is set. The model then takes that id as its mask token, growing or reusing an
    embedding row initialised to the mean embedding (a row an AR model never trained on, such as
    ByteTokenizer's [MASK] or a reused special token, is reset too).
    """
    if mask_token is not None:
        if not hasattr(tokenizer, "use_mask_token"):
            raise ValueError(
                f"mask_token {mask_token!r} needs a tokenizer with named tokens (hf); this one is "
                f"{tokenizer.to_spec().get('kind')!r}"
            )
        tokenizer.use_mask_token(mask_token)
    elif tokenizer.mask_id is None:
        if not add_mask_token or not hasattr(tokenizer, "add_mask_token"):
            raise ValueError(
                "the tokenizer has no mask token and add_mask_token is false; set add_mask_token: true "
                "or use a tokenizer with a mask token"
            )
        tokenizer.add_mask_token()
    if model.config.mask_token_id != tokenizer.mask_id:
        model.add_mask_token(tokenizer.mask_id)
