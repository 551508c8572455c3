"""Callbacks: export a dlm checkpoint directory at the end of fit, for the next stage to load."""

from __future__ import annotations

import sys
from pathlib import Path

import lightning.pytorch as pl

from dlm.core import Transformer, save_checkpoint
from dlm.core.adapter import add_adapter, save_adapter
from dlm.core.checkpoint import TrainingRecord, load_weights
from dlm.training.parallel import full_state_dict, is_sharded


def training_record(module: pl.LightningModule) -> TrainingRecord:
    """How `module` trains its model (class, block size, draft positions k, token shift, how the
    clean stream attends: its pattern's `clean`), for the checkpoint record that decoders read
    (dlm.core.checkpoint.TrainingRecord)."""
    pattern = getattr(module, "pattern", None)
    return TrainingRecord(
        type(module).__name__,
        getattr(module, "block_size", None),
        getattr(module, "k", None),
        module.model.config.token_shift,
        clean=pattern.clean if pattern is not None else None,
    )


class ExportCheckpoint(pl.Callback):
    """At the end of fit, write the trained model and tokenizer as a dlm checkpoint directory
    (dlm.json, with the training record, + model.safetensors) at `directory`, atomically. The state
    dict comes whole from the strategy (FSDP1) or is gathered from the FSDP2 shards, so sharded
    models are exported whole; rank 0 writes. A model with a draft adapter is exported whole (base +
    adapter, loadable by load_model) and its adapter alone in `directory`/adapter (a few MB, naming
    the base by fingerprint)."""

    def __init__(self, directory: str) -> None:
        self.directory = Path(directory)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # FSDP2 saves distributed checkpoints, so the strategy's state dict is sharded: gather it.
        if is_sharded(pl_module):
            state = full_state_dict(pl_module)
        else:
            state = trainer.strategy.lightning_module_state_dict()
        if not trainer.is_global_zero:
            return
        weights = {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}
        model = Transformer(pl_module.model.config)
        adapter = getattr(pl_module.model, "adapter", None)
        if adapter is not None:
            add_adapter(model, adapter)
        load_weights(model, weights, f"{type(pl_module).__name__}.model")
        record = training_record(pl_module)
        save_checkpoint(model, pl_module.tokenizer, self.directory, record)
        if adapter is not None:
            save_adapter(model, self.directory / "adapter", training=record, command=sys.argv)
