"""Checkpoint files that are either complete or absent, and a clear refusal of a foreign one.

Lightning writes a checkpoint through its strategy's CheckpointIO. Its default streams into the
target path (or into a temporary file in the system temp directory, then moved, which is a copy
across filesystems), so a process killed mid-save can leave a truncated `last.ckpt` that breaks
the next `--ckpt_path last`. AtomicCheckpointIO writes into a temporary file beside the target,
syncs it, and renames it over the target: a reader sees the old checkpoint or the new one. The
`dlm` CLI installs it in every run whose strategy uses Lightning's default CheckpointIO.
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from dlm.core.checkpoint import SHARDED_METADATA, read_sharded_checkpoint, read_torch_file
from dlm.core.config import ModelConfig


class AtomicCheckpointIO(TorchCheckpointIO):
    """torch.save to `.<name>.<random>.tmp` in the target's directory, fsync, then os.replace.

    Temporary files of an earlier writer that was killed are removed at the next save into the
    same directory (one process at a time writes a run's checkpoint directory). Loading reads with
    torch.load(weights_only=True) and turns a refused or unreadable file into a one-line ValueError naming it.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None or "://" in str(path):
            super().save_checkpoint(checkpoint, path, storage_options)  # remote storage: fsspec's own
            return
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        for stale in path.parent.glob(f".*{path.suffix}.*.tmp"):
            stale.unlink(missing_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        sync_directory(path.parent)

    def load_checkpoint(
        self, path: Any, map_location: Any = None, weights_only: bool | None = None
    ) -> dict[str, Any]:
        # Always weights_only=True (whatever the caller asks): a resumed file runs no code.
        if "://" in str(path):
            return super().load_checkpoint(path, map_location=map_location, weights_only=True)
        if Path(path).is_dir():  # a sharded run's checkpoint, read whole (`dlm test` on one device)
            check_checkpoint_file(str(path))
            return read_sharded_checkpoint(path, map_location)
        if not Path(path).is_file():
            raise FileNotFoundError(f"checkpoint {path} does not exist")
        return read_torch_file(path, map_location)


def check_checkpoint_file(path: str | None) -> None:
    """Refuse a --ckpt_path that is missing, not a torch.save archive or holds more than tensors and
    plain values, before anything reads it. Reads the zip directory at the file's end (a checkpoint
    cut short by a crash has none) and the pickle with weights_only, tensors memory-mapped, so it
    is quick for any size. A folder must be a distributed checkpoint (ShardedStrategy): its
    meta.pt and the shards' index are checked the same way. Lightning's names (last, best, hpc)
    and URLs pass unchecked."""
    if path is None or path in ("last", "best", "hpc", "registry") or "://" in str(path):
        return
    if Path(path).is_dir():
        missing = [name for name in (SHARDED_METADATA, ".metadata") if not (Path(path) / name).is_file()]
        if missing:
            raise ValueError(
                f"{path}: a folder but not a distributed checkpoint ({' and '.join(missing)} missing)"
            )
        from dlm.core.distributed_checkpoint import check_distributed_checkpoint

        check_distributed_checkpoint(path)  # torch's reader would unpickle .metadata unchecked
        path = str(Path(path) / SHARDED_METADATA)
    if not Path(path).is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        with zipfile.ZipFile(path) as archive:
            archive.namelist()
    except (zipfile.BadZipFile, OSError) as err:
        raise ValueError(f"{path}: not a readable checkpoint ({err})") from None
    read_torch_file(path, mmap=True)  # refuse a pickled payload before LightningCLI unpickles the file


def sync_directory(directory: Path) -> None:
    """Make a rename in `directory` durable (POSIX; a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on directories; the rename itself is still atomic
    finally:
        os.close(fd)


# Settings that do not change the weights or what they compute.
RUNTIME_FIELDS = ("attention_backend", "init_std")


def check_same_model(checkpoint: dict[str, Any], config: ModelConfig, source: str = "the checkpoint") -> None:
    """Refuse, naming the first differing field, to load a Lightning checkpoint written for another
    model (before Lightning's own state-dict loading fails with a page of size mismatches)."""
    record = checkpoint.get("dlm")
    if record is None:
        raise ValueError(f"{source} was not written by dlm.training (no 'dlm' record)")
    saved, here = record["model"], config.to_dict()
    for name in sorted((set(saved) | set(here)) - set(RUNTIME_FIELDS)):
        if saved.get(name) != here.get(name):
            raise ValueError(
                f"{source} holds a model with {name}={saved.get(name)!r} but this run's model has "
                f"{name}={here.get(name)!r}; resume with the configuration that wrote it"
            )
