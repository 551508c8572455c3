"""Reading a torch.distributed.checkpoint folder (an FSDP2 Lightning checkpoint) without running code
from it.

torch's FileSystemReader unpickles the folder's `.metadata` with plain pickle.load, and its
DefaultLoadPlanner reads every non-tensor item with torch.load with weights_only off, so a hostile
folder runs code as it is read. Here the metadata goes through an unpickler that admits exactly the
classes torch writes there (checkpoint metadata, torch.Size, dtypes, layouts, paths), and every
non-tensor item must load with torch.load(weights_only=True) before the planner stores it.
Tensors are read by torch with weights_only=True already.
"""

from __future__ import annotations

import io
import pickle
import re
from pathlib import Path
from typing import Any

import torch
from torch.distributed.checkpoint import DefaultLoadPlanner, FileSystemReader
from torch.distributed.checkpoint.api import CheckpointException
from torch.distributed.checkpoint.default_planner import _EmptyStateDictLoadPlanner
from torch.distributed.checkpoint.metadata import BytesStorageMetadata, StorageMeta
from torch.distributed.checkpoint.state_dict_loader import _load_state_dict

METADATA_CLASSES = {
    "torch.distributed.checkpoint.metadata": {
        "BytesStorageMetadata",
        "ChunkStorageMetadata",
        "Metadata",
        "MetadataIndex",
        "StorageMeta",
        "TensorProperties",
        "TensorStorageMetadata",
        "_MEM_FORMAT_ENCODING",
    },
    "torch.distributed.checkpoint.filesystem": {"_StorageInfo"},
    "torch": {"Size"},
    "torch.serialization": {"_get_layout"},
    "pathlib": {"Path", "PosixPath", "PurePosixPath", "WindowsPath", "PureWindowsPath"},
    "collections": {"OrderedDict"},
}
"""What `.metadata` may name (read in torch 2.13's writer); anything else is refused."""


class MetadataUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        dtype = module == "torch" and isinstance(getattr(torch, name, None), torch.dtype)
        # No dotted names: pickle would walk them as attributes (metadata.os.system).
        if "." not in name and (name in METADATA_CLASSES.get(module, ()) or dtype):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"GLOBAL {module}.{name} is not checkpoint metadata")


class SafeReader(FileSystemReader):
    """FileSystemReader whose metadata is read by MetadataUnpickler (pickle.UnpicklingError naming
    the refused global otherwise)."""

    def read_metadata(self, *args: Any, **kwargs: Any) -> Any:
        with self.fs.create_stream(self._get_metadata_path(kwargs.get("rank")), "rb") as file:
            metadata = MetadataUnpickler(file).load()
        if getattr(metadata, "storage_meta", None) is None:
            metadata.storage_meta = StorageMeta()
        metadata.storage_meta.load_id = self.load_id
        return metadata


class WeightsOnlyBytes:
    """Load-planner mixin: a non-tensor item is stored only if torch.load(weights_only=True) reads
    it (checked on its bytes; the planner's own load_bytes then stores the same bytes)."""

    def load_bytes(self, read_item: Any, value: io.BytesIO) -> None:
        data = value.getvalue()
        try:
            torch.load(io.BytesIO(data), weights_only=True)
        except pickle.UnpicklingError as err:
            found = re.search(r"GLOBAL ([\w.]+)", str(err))
            what = f"GLOBAL {found.group(1)}" if found else "objects torch.load(weights_only=True) refuses"
            raise pickle.UnpicklingError(f"{what} in item {read_item.dest_index.fqn}") from None
        super().load_bytes(read_item, io.BytesIO(data))  # type: ignore[misc]


class SafeLoadPlanner(WeightsOnlyBytes, DefaultLoadPlanner):
    """DefaultLoadPlanner (loads into a given state dict, e.g. a resumed run's) with weights-only bytes."""


class SafeWholeLoadPlanner(WeightsOnlyBytes, _EmptyStateDictLoadPlanner):
    """Rebuilds the saved state dict (the `keys` given) on one process, with weights-only bytes."""


def load_distributed(folder: str | Path, keys: set[str]) -> dict[str, Any]:
    """The saved entries named by `keys` (top-level or flattened names), rebuilt on this process;
    a one-line ValueError for a folder that holds more than tensors and plain values, or is damaged."""
    state: dict[str, Any] = {}
    try:
        _load_state_dict(
            state, storage_reader=SafeReader(folder), planner=SafeWholeLoadPlanner(keys=keys), no_dist=True
        )
    except (Exception, CheckpointException) as err:  # CheckpointException is a BaseException
        if isinstance(err, CheckpointException):
            err = next(iter(err.failures.values()))[0]
        found = re.search(r"GLOBAL ([\w.]+)", str(err))
        if found:
            raise ValueError(
                f"{folder}: refused to load: it holds a pickled {found.group(1)}, not only the tensors "
                "and plain values dlm writes (no code runs from a checkpoint)"
            ) from None
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        reason = lines[0] if lines else type(err).__name__
        raise ValueError(f"{folder}: not a readable distributed checkpoint ({reason})") from None
    return state


def check_distributed_checkpoint(folder: str | Path) -> None:
    """Refuse, before torch's own reader (pickle.load, weights_only off) reads it, a folder whose
    metadata or non-tensor items hold more than tensors and plain values; reads no tensor."""
    try:
        metadata = SafeReader(folder).read_metadata()
    except pickle.UnpicklingError as err:
        found = re.search(r"GLOBAL ([\w.]+)", str(err))
        what = f"a pickled {found.group(1)}" if found else "unreadable metadata"
        raise ValueError(f"{folder}: refused to load: its .metadata holds {what}") from None
    except (OSError, EOFError) as err:
        raise ValueError(f"{folder}: not a readable distributed checkpoint ({err})") from None
    items = {k for k, v in metadata.state_dict_metadata.items() if isinstance(v, BytesStorageMetadata)}
    if items:
        load_distributed(folder, items)
