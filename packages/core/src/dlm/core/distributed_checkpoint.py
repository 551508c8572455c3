"""Reading a torch.distributed.checkpoint folder (an FSDP2 Lightning checkpoint) without running code
from it.

torch's FileSystemReader unpickles the folder's `.metadata` with plain pickle.load, and its
DefaultLoadPlanner reads every non-tensor item with torch.load(weights_only=False), so a hostile
folder runs code as it is read. Here the metadata goes through an unpickler that admits exactly the
classes torch writes there (checkpoint metadata, torch.Size, dtypes, layouts, paths), and every
non-tensor item must load with torch.load(weights_only=True) before the planner stores it.
Tensors are read by torch with weights_only=True already.
"""

from __future__ import annotations

import io
import pickle
import re
from typing import Any

import torch
from torch.distributed.checkpoint import DefaultLoadPlanner, FileSystemReader
from torch.distributed.checkpoint.default_planner import _EmptyStateDictLoadPlanner
from torch.distributed.checkpoint.metadata import StorageMeta

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
