"""Checks a run passes before it starts, so a bad setup fails in seconds with one line, not after
hours (an unwritable checkpoint directory) or never (a multi-node run nobody launched)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import lightning.pytorch as pl
from lightning.fabric.plugins.environments import LightningEnvironment
from lightning.pytorch.callbacks import ModelCheckpoint

from dlm.training.callbacks import ExportCheckpoint


def check_launcher(trainer: pl.Trainer) -> None:
    """A multi-node run needs one process per node started by a launcher that tells each its node
    rank and the main node's address: SLURM (srun) and torchrun are detected by Lightning;
    otherwise NODE_RANK and MASTER_ADDR must be set. Without them every node would believe it is
    node 0 of a job whose other nodes never come, and wait."""
    env = getattr(trainer.strategy, "cluster_environment", None)
    if trainer.num_nodes <= 1 or type(env) is not LightningEnvironment:
        return
    missing = [v for v in ("NODE_RANK", "MASTER_ADDR") if v not in os.environ]
    if "GROUP_RANK" in os.environ and "NODE_RANK" in missing:
        missing.remove("NODE_RANK")
    if missing:
        raise ValueError(
            f"trainer.num_nodes={trainer.num_nodes} but no launcher started this process as one of "
            f"{trainer.num_nodes} nodes ({' and '.join(missing)} unset, no SLURM or torchrun environment): "
            "run one `dlm` per node with srun or torchrun, or set NODE_RANK, MASTER_ADDR and MASTER_PORT "
            "on each node"
        )


def output_directories(trainer: pl.Trainer, fitting: bool) -> dict[str, Path]:
    """Where the run will write, by the setting that names each place."""
    places = {"trainer.default_root_dir": Path(trainer.default_root_dir)}
    for logger in trainer.loggers:
        if logger.save_dir is not None:
            places[f"{type(logger).__name__}.save_dir"] = Path(logger.save_dir)
    if fitting:
        for callback in trainer.callbacks:
            if isinstance(callback, ModelCheckpoint) and callback.dirpath is not None:
                places["ModelCheckpoint.dirpath"] = Path(callback.dirpath)
            elif isinstance(callback, ExportCheckpoint):
                places["ExportCheckpoint.directory"] = callback.directory.parent
    return {name: path for name, path in places.items() if "://" not in str(path)}


def check_writable(trainer: pl.Trainer, fitting: bool) -> None:
    """Create every output directory and a file in it, or fail naming the setting and the reason."""
    for name, path in output_directories(trainer, fitting).items():
        try:
            path.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=path):
                pass
        except OSError as err:
            raise ValueError(
                f"cannot write {name} {path} ({err.strerror or err}); choose a writable directory"
            ) from None
