"""FSDP2 sharding of a dlm Transformer, applied from outside the model as torchtitan's parallelize
does, and ShardedStrategy, the Lightning strategy that runs it.

`parallelize` calls `fully_shard` on every Block, then on the root, whose unit keeps what is left:
the embedding, the final norm and the head (tied or not, one unit, so a tied weight stays one
parameter). Activation checkpointing, when asked, is the composable `checkpoint` on each Block, which
keeps parameter names (a wrapper module would add `_checkpoint_wrapped_module.` to them).

Precision is owned by FSDP2's MixedPrecisionPolicy, set from `trainer.precision`: under bf16-mixed
each unit all-gathers its parameters in bf16 and computes in bf16, while the sharded fp32 parameters
stay the optimizer's master copy and gradients are reduced in fp32. Lightning's autocast stays on
around the step but finds bf16 weights already; leaving precision to autocast instead would
all-gather fp32 parameters (twice the traffic and the unsharded memory) and cast every weight at
every use. fp16 (16-mixed) would need a gradient scaler that understands sharded gradients, which
Lightning's ModelParallelStrategy does not install: it is refused.
"""

from __future__ import annotations

import os
import shutil
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import torch
from lightning.fabric.plugins.collectives.torch_collective import default_pg_timeout
from lightning.fabric.strategies.fsdp import _METADATA_FILENAME
from lightning.pytorch.strategies import ModelParallelStrategy
from torch import nn
from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard, register_fsdp_forward_method

from dlm.core.checkpoint import read_torch_file
from dlm.core.distributed_checkpoint import check_distributed_checkpoint
from dlm.training.checkpointing import check_same_model, sync_directory

POLICIES = {
    "bf16-mixed": MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32),
    "32-true": None,
    "32": None,
    "bf16-true": None,
    "bf16": None,
    "64-true": None,
}


def mixed_precision_policy(precision: str) -> MixedPrecisionPolicy | None:
    """FSDP2's policy for a Lightning precision string, or a one-line refusal."""
    precision = str(precision)
    if precision not in POLICIES:
        raise ValueError(
            f"precision {precision!r} cannot run sharded (ModelParallelStrategy): fp16 needs a gradient "
            f"scaler for sharded gradients, which Lightning does not install there; use one of "
            f"{sorted(POLICIES)} (bf16-mixed at scale)"
        )
    return POLICIES[precision]


def data_parallel_mesh(mesh: Any) -> Any:
    """The data-parallel sub-mesh, after refusing tensor parallelism (not built yet)."""
    tp = mesh["tensor_parallel"].size()
    if tp != 1:
        raise ValueError(
            f"tensor_parallel_size={tp}: dlm shards with FSDP2 only (tensor parallelism is not built); set "
            f"data_parallel_size to the number of processes ({mesh.size()}) and tensor_parallel_size: 1"
        )
    return mesh["data_parallel"]


def parallelize(
    model: nn.Module, mesh: Any, precision: str = "32-true", activation_checkpointing: bool = False
) -> nn.Module:
    """Shard `model` (a dlm Transformer) in place over the 1-D `mesh`: one FSDP2 unit per Block, then
    the root. `hidden` (the final states without the head) gathers the parameters as `forward` does."""
    from torch.distributed._composable import checkpoint

    policy = mixed_precision_policy(precision)
    kwargs = {"mesh": mesh} if policy is None else {"mesh": mesh, "mp_policy": policy}
    for block in model.layers:
        if activation_checkpointing:
            checkpoint(block)
        fully_shard(block, **kwargs)
    fully_shard(model, **kwargs)
    register_fsdp_forward_method(model, "hidden")
    return model


def is_sharded(module: nn.Module) -> bool:
    return any(isinstance(m, FSDPModule) for m in module.modules())


def full_state_dict(module: nn.Module) -> dict[str, torch.Tensor]:
    """The whole, unsharded state dict of a module with FSDP2 parts, on CPU, on rank 0 (empty on the
    other ranks). A collective: every rank calls it."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(module, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


class ShardedStrategy(ModelParallelStrategy):
    """Lightning's ModelParallelStrategy (FSDP2) as dlm runs it: every process data parallel, no tensor
    parallelism, distributed (per-rank) checkpoints written crash-safe.

    Args:
        data_parallel_size: Processes that shard the model; "auto" = all of them (num_nodes x
            devices). Lightning's own "auto" is the number of nodes, which on one node shards
            nothing and makes every process a tensor-parallel rank.
        tensor_parallel_size: Must be 1 (tensor parallelism is not built).
        activation_checkpointing: Recompute each Block's activations in the backward pass.

    A checkpoint is a folder (one shard file per rank and `meta.pt`). It is written into a hidden
    folder beside its name, and the name is then a symlink switched to it in one rename, so a
    killed job leaves the previous checkpoint whole; it resumes on any number of processes.
    """

    def __init__(
        self,
        data_parallel_size: Literal["auto"] | int = "auto",
        tensor_parallel_size: int = 1,
        activation_checkpointing: bool = False,
        process_group_backend: str | None = None,
        timeout: timedelta | None = default_pg_timeout,
    ) -> None:
        if tensor_parallel_size != 1:
            raise ValueError(
                f"tensor_parallel_size={tensor_parallel_size!r}: dlm shards with FSDP2 only (tensor "
                "parallelism is not built); use tensor_parallel_size: 1"
            )
        super().__init__(data_parallel_size, 1, True, process_group_backend, timeout)
        self.activation_checkpointing = activation_checkpointing

    def setup_environment(self) -> None:
        if self._data_parallel_size == "auto":
            self._data_parallel_size = self.num_nodes * self.num_processes
        super().setup_environment()

    def save_checkpoint(self, checkpoint: dict[str, Any], filepath: Any, storage_options: Any = None) -> None:
        path = Path(self.broadcast(str(filepath)))
        staging = path.parent / f".{path.name}.{self.broadcast(uuid.uuid4().hex[:8])}"
        if self.global_rank == 0:
            path.parent.mkdir(parents=True, exist_ok=True)
            current = path.resolve() if path.is_symlink() else None
            for stale in path.parent.glob(f".{path.name}.*"):  # of a writer killed mid-save
                if stale.is_symlink():
                    stale.unlink()
                elif stale.is_dir() and stale.resolve() != current:
                    shutil.rmtree(stale, ignore_errors=True)
        self.barrier("dlm-checkpoint-clean")
        super().save_checkpoint(checkpoint, staging)
        self.barrier("dlm-checkpoint-written")
        if self.global_rank == 0:
            publish(staging, path)
        self.barrier("dlm-checkpoint-published")

    def remove_checkpoint(self, filepath: Any) -> None:
        if self.is_global_zero:
            path = Path(filepath)
            target = path.resolve() if path.is_symlink() else None
            if path.is_symlink() or path.is_file():
                path.unlink()
            elif path.is_dir():
                shutil.rmtree(path)
            if target is not None:
                shutil.rmtree(target, ignore_errors=True)

    def load_checkpoint(self, checkpoint_path: Any, weights_only: bool | None = None) -> dict[str, Any]:
        path = Path(checkpoint_path)
        if (path / _METADATA_FILENAME).is_file():  # refuse another model before the shards load
            meta = read_torch_file(path / _METADATA_FILENAME)
            check_same_model(meta, self.lightning_module.model.config, str(path))
        if path.is_dir():  # torch's reader unpickles .metadata and non-tensor items unchecked
            check_distributed_checkpoint(path)
        return super().load_checkpoint(checkpoint_path, weights_only)


def publish(staging: Path, path: Path) -> None:
    """Make `path` a relative symlink to the complete folder `staging`, in one rename; remove what it
    replaced (an older checkpoint folder, or a file or folder left by another strategy)."""
    sync_directory(staging)
    old = path.resolve() if path.is_symlink() else None
    if path.exists() and not path.is_symlink():
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    link = path.parent / f".{path.name}.link-{uuid.uuid4().hex[:8]}"
    os.symlink(staging.name, link)
    os.replace(link, path)
    sync_directory(path.parent)
    if old is not None and old != staging.resolve():
        shutil.rmtree(old, ignore_errors=True)
