"""A draft adapter: low-rank deltas that act only on draft tokens, so AR decoding stays the base model.

`add_adapter(model, DraftAdapter(...))` puts a `LowRank` delta beside each chosen projection of
every layer (`model.layers[i].attn.adapters["o"]`, ...). The model applies a delta only to the
tokens its per-token `draft` gate marks (`Transformer.forward(..., draft=...)`): in training the
noisy half of `[x_t ; x_0]`, in decoding the tokens of a draft forward. AR, verify and commit
forwards leave it unmarked and compute the base's logits exactly, so self-speculation with the
adapter is lossless against the base itself.

The [MASK] token is a row of a tied embedding: trained there it would also move an output column.
With `mask_embedding` the adapter owns an input-only [MASK] vector instead, and the table is left
as it was.

An adapter saves on its own (`save_adapter`: adapter.safetensors + adapter.json, a few MB) with
the fingerprint of the base it was trained on; `load_adapter` refuses another base in one line.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from dlm.core.atomic import staged_directory
from dlm.core.fingerprint import model_fingerprint

ATTENTION = ("q", "k", "v", "o")
MLP = ("gate", "up", "down")
RECORD, WEIGHTS = "adapter.json", "adapter.safetensors"


class LowRank(nn.Module):
    """x -> up(down(x)) * alpha / rank: PEFT's LoRA delta (lora_B(lora_A(x)) * scaling, no dropout),
    initialised as PEFT does (down Kaiming-uniform, up zero), so a new adapter changes nothing."""

    def __init__(self, in_features: int, out_features: int, rank: int, alpha: float) -> None:
        super().__init__()
        self.down = nn.Linear(in_features, rank, bias=False)
        self.up = nn.Linear(rank, out_features, bias=False)
        self.scale = alpha / rank

    def reset(self, generator: torch.Generator) -> None:
        with torch.no_grad():
            weight = torch.empty(self.down.weight.shape)
            nn.init.kaiming_uniform_(weight, a=math.sqrt(5), generator=generator)
            self.down.weight.copy_(weight)
            self.up.weight.zero_()

    def forward(self, x: Tensor) -> Tensor:
        return self.up(self.down(x)) * self.scale


@dataclass(frozen=True)
class DraftAdapter:
    """What a draft adapter adapts (chosen in YAML).

    Args:
        targets: Projections of every layer: any of q, k, v, o (attention), gate, up, down (MLP).
        rank: Rank of each delta.
        alpha: Scale numerator: the delta is multiplied by alpha / rank (PEFT's lora_alpha).
        mask_embedding: Learn an input-only [MASK] embedding (else the table's row, frozen).
        seed: Seed of the deltas' initialisation.
    """

    targets: tuple[str, ...] = ("o",)
    rank: int = 16
    alpha: float = 32.0
    mask_embedding: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        targets = tuple(self.targets)
        unknown = [t for t in targets if t not in ATTENTION + MLP]
        if not targets or unknown or len(set(targets)) != len(targets):
            raise ValueError(
                f"adapter targets must be distinct names among {', '.join(ATTENTION + MLP)}, got {list(targets)}"
            )
        object.__setattr__(self, "targets", targets)
        if isinstance(self.rank, bool) or not isinstance(self.rank, int) or self.rank < 1:
            raise ValueError(f"adapter rank must be a positive integer, got {self.rank!r}")
        if isinstance(self.alpha, bool) or not isinstance(self.alpha, int | float) or not self.alpha > 0:
            raise ValueError(f"adapter alpha must be a positive number, got {self.alpha!r}")


def adapter_from_record(entry: object, source: str) -> DraftAdapter:
    """The DraftAdapter a record's "adapter" entry describes (one-line ValueError otherwise)."""
    try:
        return DraftAdapter(**{**entry, "targets": tuple(entry["targets"])})
    except (TypeError, KeyError) as err:
        raise ValueError(f"{source}: the record's 'adapter' is not a draft adapter ({err})") from None


def add_adapter(model: nn.Module, adapter: DraftAdapter) -> None:
    """Attach `adapter`'s deltas (zero at first) to every layer of `model` (a dlm Transformer), in
    the dtype and on the device of the projections they sit beside."""
    if has_adapter(model):
        raise ValueError("the model already has a draft adapter")
    if adapter.mask_embedding and model.config.mask_token_id is None:
        raise ValueError("adapter mask_embedding needs a model with a mask token; add one first")
    generator = torch.Generator().manual_seed(adapter.seed)
    for layer in model.layers:
        for name in adapter.targets:
            owner = layer.attn if name in ATTENTION else layer.mlp
            base: nn.Linear = getattr(owner, name)
            delta = LowRank(base.in_features, base.out_features, adapter.rank, adapter.alpha)
            delta.reset(generator)
            owner.adapters[name] = delta.to(device=base.weight.device, dtype=base.weight.dtype)
    if adapter.mask_embedding:
        row = model.embed.weight[model.config.mask_token_id].detach().clone()
        model.mask_embedding = nn.Parameter(row)
    model.adapter = adapter


def has_adapter(model: nn.Module) -> bool:
    return getattr(model, "adapter", None) is not None


def adapter_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """The adapter's parameters by state-dict name (what trains when the base is frozen)."""
    return {n: p for n, p in model.named_parameters() if ".adapters." in n or n == "mask_embedding"}


def freeze_base(model: nn.Module) -> None:
    """requires_grad False for every parameter but the adapter's."""
    mine = set(adapter_parameters(model))
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(name in mine)


def base_fingerprint(model: nn.Module) -> str:
    """The fingerprint (dlm.core.checkpoint.model_fingerprint) of the base under the adapter."""
    return model_fingerprint(model, skip=set(adapter_parameters(model)))


def save_adapter(
    model: nn.Module, directory: str | Path, training: Any | None = None, **record: object
) -> Path:
    """Write the adapter alone (adapter.safetensors, adapter.json naming the base's fingerprint and
    any extra `record` fields, such as the command that trained it), all at once. `training` (a
    dlm.core.checkpoint.TrainingRecord) is the layout the adapter was trained for; the base's
    record (an HF base has none) does not say which block its drafts were trained on."""
    if not has_adapter(model):
        raise ValueError("the model has no draft adapter to save")
    state = {n: p.detach().contiguous().cpu() for n, p in adapter_parameters(model).items()}
    with staged_directory(directory) as tmp:
        save_file(state, str(tmp / WEIGHTS))
        meta = {"format": "dlm-adapter", "version": 1, "adapter": asdict(model.adapter)}
        meta["base"] = base_fingerprint(model)
        if training is not None:
            meta["training"] = training.to_dict()
        (tmp / RECORD).write_text(json.dumps({**meta, **record}, indent=2, default=str))
    return Path(directory)


def load_adapter(model: nn.Module, directory: str | Path) -> DraftAdapter:
    """Attach the adapter saved in `directory` to `model`, its base, and give the model the
    adapter's training record when it has one (decoders take their block from it); ValueError (one
    line) for a directory that holds no adapter or an adapter trained on another base."""
    from dlm.core.checkpoint import TrainingRecord, set_training  # checkpoint imports this module

    directory = Path(directory)
    try:
        meta = json.loads((directory / RECORD).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{directory}: no {RECORD} (not a dlm draft adapter)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{directory / RECORD}: not a dlm adapter record ({err})") from None
    adapter = adapter_from_record(
        meta.get("adapter") if isinstance(meta, dict) else None, str(directory / RECORD)
    )
    fingerprint = base_fingerprint(model)
    if meta.get("base") != fingerprint:
        raise ValueError(
            f"{directory}: the adapter was trained on base {meta.get('base')}, not this model ({fingerprint})"
        )
    training = meta.get("training")
    training = TrainingRecord.from_dict(training, str(directory / RECORD)) if training is not None else None
    add_adapter(model, adapter)
    state = load_file(str(directory / WEIGHTS))
    mine = adapter_parameters(model)
    if set(state) != set(mine):
        raise ValueError(f"{directory / WEIGHTS}: tensors {sorted(set(state) ^ set(mine))[:3]} do not match")
    with torch.no_grad():
        for name, tensor in state.items():
            mine[name].copy_(tensor)
    if training is not None:
        set_training(model, training)
    return adapter
