"""config.json <-> ModelConfig: one translation for every family (families.py holds the differences)."""

from __future__ import annotations

import functools
import logging
from typing import Any

import torch

from dlm.core.config import ModelConfig
from dlm.core.hf.families import COMMON_DEFAULTS, Family, family_for_export, family_named

log = logging.getLogger(__name__)

DLM_KEY = "dlm"
"""config.json entry holding our fields that transformers has no key for (transformers ignores it)."""
DLM_FIELDS = ("token_shift", "mask_token_id", "attention_backend")
REQUIRED = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads")
LLAMA3_KEYS = ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings")


def model_config_from_hf(cfg: dict[str, Any], source: str) -> ModelConfig:
    """Our ModelConfig for an HF config.json (as a dict); a clear error for what we cannot represent."""
    family = family_named(cfg.get("model_type"), source)

    def value(key: str) -> Any:
        if key in cfg:
            return cfg[key]
        return family.defaults.get(key, COMMON_DEFAULTS.get(key))

    missing = [key for key in REQUIRED if cfg.get(key) is None]
    if missing:
        raise ValueError(f"{source}: config.json lacks {missing[0]!r} (needs {', '.join(REQUIRED)})")
    if value("hidden_act") != "silu":
        raise ValueError(f"{source}: hidden_act {value('hidden_act')!r} is not supported; expected 'silu'")
    for flag in family.no_bias_flags:
        if cfg.get(flag):
            raise ValueError(f"{source}: {flag}=true adds biases our model lacks; expected false")
    heads = cfg["num_attention_heads"]
    theta, scaling = _rope(cfg, source)
    window = _window(cfg, family)
    if window is not None:
        _warn_window(window)
    extra = {"model_type": family.model_type}
    window_keys = (family.window_key, family.window_switch, "max_window_layers")
    extra.update({k: value(k) for k in window_keys if k in cfg or k in family.defaults})
    ours = cfg.get(DLM_KEY) or {}
    return ModelConfig(
        vocab_size=cfg["vocab_size"],
        dim=cfg["hidden_size"],
        n_layers=cfg["num_hidden_layers"],
        n_heads=heads,
        n_kv_heads=cfg.get("num_key_value_heads") or heads,
        head_dim=cfg.get("head_dim") or family.head_dim or cfg["hidden_size"] // heads,
        hidden_dim=cfg["intermediate_size"],
        rope_theta=float(theta),
        rope_scaling=scaling,
        norm_eps=value("rms_norm_eps"),
        qk_norm=family.qk_norm,
        qkv_bias=family.qkv_bias,
        tie_embeddings=bool(value("tie_word_embeddings")),
        max_seq_len=value("max_position_embeddings"),
        init_std=value("initializer_range"),
        extra=extra,
        **{k: ours[k] for k in DLM_FIELDS if k in ours},
    )


def hf_config_from_model(
    config: ModelConfig, dtype: torch.dtype, special_ids: dict[str, int | None]
) -> dict[str, Any]:
    """The config.json dict for our model, in the family its config names (or implies)."""
    family = family_for_export(config.qkv_bias, config.qk_norm, config.extra.get("model_type"))
    scaling = dict(config.rope_scaling) if config.rope_scaling else None
    if scaling is not None:
        scaling["rope_type"] = scaling.pop("type", scaling.get("rope_type", "llama3"))
    cfg: dict[str, Any] = {
        "architectures": [family.architecture],
        "model_type": family.model_type,
        "vocab_size": config.vocab_size,
        "hidden_size": config.dim,
        "intermediate_size": config.mlp_size,
        "num_hidden_layers": config.n_layers,
        "num_attention_heads": config.n_heads,
        "num_key_value_heads": config.kv_heads,
        "head_dim": config.head_size,
        "hidden_act": "silu",
        "max_position_embeddings": config.max_seq_len,
        "rms_norm_eps": config.norm_eps,
        "initializer_range": config.init_std,
        "tie_word_embeddings": config.tie_embeddings,
        # transformers 4 reads rope_theta/rope_scaling, transformers 5 rope_parameters: write both.
        "rope_theta": config.rope_theta,
        "rope_scaling": scaling,
        "rope_parameters": {"rope_type": "default", **(scaling or {}), "rope_theta": config.rope_theta},
        "dtype": str(dtype).removeprefix("torch."),
        "use_cache": True,
        **{flag: False for flag in family.no_bias_flags},
        **{f"{name}_token_id": token for name, token in special_ids.items()},
    }
    if family.window_key:
        # Without a stored window the export is full attention, which is what our model computes.
        cfg[family.window_key] = config.extra.get(family.window_key)
    if family.window_switch:
        cfg[family.window_switch] = config.extra.get(family.window_switch, False)
    if "max_window_layers" in config.extra:
        cfg["max_window_layers"] = config.extra["max_window_layers"]
    cfg[DLM_KEY] = {k: getattr(config, k) for k in DLM_FIELDS}
    return cfg


def checkpoint_dtype(cfg: dict[str, Any], source: str) -> torch.dtype | None:
    """The dtype config.json declares ("dtype" in transformers 5, "torch_dtype" before), or None."""
    name = cfg.get("dtype") or cfg.get("torch_dtype")
    if name is None:
        return None
    dtype = getattr(torch, str(name).removeprefix("torch."), None)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"{source}: config.json dtype {name!r} is not a torch floating-point dtype")
    return dtype


def _rope(cfg: dict[str, Any], source: str) -> tuple[float, dict[str, Any] | None]:
    """(theta, llama3 scaling or None), resolved with transformers 5's precedence: a legacy
    rope_scaling dict wins over rope_parameters, and theta falls back to the top-level rope_theta."""
    params = cfg.get("rope_scaling") or cfg.get("rope_parameters") or {}
    theta = params.get("rope_theta", cfg.get("rope_theta", COMMON_DEFAULTS["rope_theta"]))
    partial = params.get("partial_rotary_factor", cfg.get("partial_rotary_factor"))
    if partial not in (None, 1, 1.0):
        raise ValueError(f"{source}: partial_rotary_factor={partial} is not supported; expected 1")
    kind = params.get("rope_type", params.get("type", "default"))
    if kind == "default":
        return theta, None
    if kind != "llama3":
        raise ValueError(f"{source}: rope type {kind!r} is not supported; expected 'default' or 'llama3'")
    missing = [key for key in LLAMA3_KEYS if key not in params]
    if missing:
        raise ValueError(f"{source}: llama3 rope parameters lack {missing[0]!r}")
    return theta, {"rope_type": "llama3", **{key: params[key] for key in LLAMA3_KEYS}}


def _window(cfg: dict[str, Any], family: Family) -> int | None:
    """The sliding-window length transformers would apply, or None for full attention."""
    if family.window_key is None:
        return None
    window = cfg.get(family.window_key, family.defaults.get(family.window_key))
    if family.window_switch is not None and not cfg.get(family.window_switch, False):
        return None
    return window


@functools.cache
def _warn_window(window: int) -> None:
    # Our model attends over the full context; within the window that is exactly the same result.
    log.warning(
        "checkpoint uses sliding-window attention (window %d); dlm attends over the full context, "
        "so logits match transformers exactly only for sequences up to %d tokens",
        window,
        window,
    )
