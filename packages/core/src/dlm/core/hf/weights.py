"""HF <-> dlm weight names, and reading and writing safetensors weights (one file or sharded).

One mapping serves every family: a family only decides which of these tensors exist (biases, q/k
norms, lm_head), and load_weights names whatever is missing, unexpected or mis-shaped.
"""

from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import save_file
from torch import Tensor

from dlm.core.checkpoint import read_safetensors

SINGLE = "model.safetensors"
INDEX = "model.safetensors.index.json"

TOP_NAMES = {
    "embed.weight": "model.embed_tokens.weight",
    "norm.weight": "model.norm.weight",
    "lm_head.weight": "lm_head.weight",
}
LAYER_NAMES = {
    "attn_norm.weight": "input_layernorm.weight",
    "mlp_norm.weight": "post_attention_layernorm.weight",
    "attn.q_norm.weight": "self_attn.q_norm.weight",
    "attn.k_norm.weight": "self_attn.k_norm.weight",
    **{f"attn.{p}.weight": f"self_attn.{p}_proj.weight" for p in "qkvo"},
    **{f"attn.{p}.bias": f"self_attn.{p}_proj.bias" for p in "qkv"},
    **{f"mlp.{p}.weight": f"mlp.{p}_proj.weight" for p in ("gate", "up", "down")},
}
HF_TOP_NAMES = {hf: ours for ours, hf in TOP_NAMES.items()}
HF_LAYER_NAMES = {hf: ours for ours, hf in LAYER_NAMES.items()}
HF_LAYER_PREFIX = "model.layers."
# Some older checkpoints store RoPE's inverse frequencies, which we recompute from the config.
HF_DERIVED_SUFFIX = "rotary_emb.inv_freq"


def hf_name(name: str) -> str:
    """The HF name of one of our weights (layers.3.attn.q.weight -> model.layers.3.self_attn.q_proj.weight)."""
    if name in TOP_NAMES:
        return TOP_NAMES[name]
    layer, _, rest = name.removeprefix("layers.").partition(".")
    if name.startswith("layers.") and rest in LAYER_NAMES:
        return f"{HF_LAYER_PREFIX}{layer}.{LAYER_NAMES[rest]}"
    raise ValueError(f"to_hf: our weight {name!r} has no HF counterpart")


def our_name(name: str) -> str:
    """Our name of an HF weight; names with no counterpart come back unchanged, so load_weights
    reports them as unexpected under the name the checkpoint uses."""
    if name in HF_TOP_NAMES:
        return HF_TOP_NAMES[name]
    if name.startswith(HF_LAYER_PREFIX):
        layer, _, rest = name.removeprefix(HF_LAYER_PREFIX).partition(".")
        if rest in HF_LAYER_NAMES:
            return f"layers.{layer}.{HF_LAYER_NAMES[rest]}"
    return name


def read_hf_state(directory: Path) -> dict[str, Tensor]:
    """Every tensor of an HF checkpoint directory under our names (sharded or one file)."""
    index = directory / INDEX
    if index.is_file():
        files = _shard_files(index)
        hf_state: dict[str, Tensor] = {}
        for file in files:
            hf_state.update(read_safetensors(file))
    elif (directory / SINGLE).is_file():
        hf_state = read_safetensors(directory / SINGLE)
    else:
        raise FileNotFoundError(
            f"{directory}: no {SINGLE} or {INDEX} (only safetensors checkpoints can be read)"
        )
    return {our_name(k): v for k, v in hf_state.items() if not k.endswith(HF_DERIVED_SUFFIX)}


def _shard_files(index: Path) -> list[Path]:
    try:
        weight_map = json.loads(index.read_text())["weight_map"]
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{index}: not a safetensors index with a weight_map ({err})") from None
    files = [index.parent / name for name in sorted(set(weight_map.values()))]
    for file in files:
        if not file.is_file():
            raise FileNotFoundError(f"{index.parent}: shard {file.name} named in {INDEX} is missing")
    return files


def write_hf_state(state: dict[str, Tensor], tied: bool, directory: Path) -> None:
    """Our state dict as one model.safetensors under HF names (lm_head left out when tied)."""
    hf_state = {
        hf_name(k): v.detach().contiguous().cpu()
        for k, v in state.items()
        if not (tied and k == "lm_head.weight")
    }
    save_file(hf_state, str(directory / SINGLE), metadata={"format": "pt"})
