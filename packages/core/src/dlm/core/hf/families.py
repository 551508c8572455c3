"""The HF families we read and write, as data: one row per family, no per-family code.

Every family is the same Llama-style decoder; the rows say how each one spells its differences in
config.json (bias, q/k norm, head size, sliding window) and what transformers assumes when a key is
absent, so a checkpoint that omits a key is read the way transformers reads it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Family:
    model_type: str
    """config.json "model_type"."""
    architecture: str
    """config.json "architectures" entry (the transformers class)."""
    qkv_bias: bool
    """The family always has a bias on q/k/v (and never on o)."""
    qk_norm: bool
    """The family always applies RMSNorm to each head's queries and keys."""
    head_dim: int | None
    """head_dim when config.json has none; None means hidden_size // num_attention_heads."""
    window_key: str | None = None
    """config.json key of the sliding-window length, None when the family has no window."""
    window_switch: str | None = None
    """Key that must be true for the window to apply (Qwen); None: a set window always applies."""
    defaults: dict[str, Any] = field(default_factory=dict)
    """transformers' defaults for keys a config.json may omit."""
    no_bias_flags: tuple[str, ...] = ()
    """Keys that would add biases our model lacks (on o_proj or the MLP): refused when true on
    import, written false on export."""


FAMILIES = {
    f.model_type: f
    for f in (
        Family(
            "llama",
            "LlamaForCausalLM",
            qkv_bias=False,
            qk_norm=False,
            head_dim=None,
            defaults={"max_position_embeddings": 2048},
            no_bias_flags=("attention_bias", "mlp_bias"),
        ),
        Family(
            "qwen2",
            "Qwen2ForCausalLM",
            qkv_bias=True,
            qk_norm=False,
            head_dim=None,
            window_key="sliding_window",
            window_switch="use_sliding_window",
            defaults={"max_position_embeddings": 32768},
        ),
        Family(
            "qwen3",
            "Qwen3ForCausalLM",
            qkv_bias=False,
            qk_norm=True,
            head_dim=128,
            window_key="sliding_window",
            window_switch="use_sliding_window",
            defaults={"max_position_embeddings": 32768},
            no_bias_flags=("attention_bias",),
        ),
        Family(
            "mistral",
            "MistralForCausalLM",
            qkv_bias=False,
            qk_norm=False,
            head_dim=None,
            window_key="sliding_window",
            defaults={"max_position_embeddings": 131072, "sliding_window": 4096},
        ),
    )
}

# Shared by every family: transformers' defaults for the keys an older config.json may omit.
COMMON_DEFAULTS = {
    "rms_norm_eps": 1e-6,
    "rope_theta": 10000.0,
    "tie_word_embeddings": False,
    "hidden_act": "silu",
    "initializer_range": 0.02,
}


def family_named(model_type: Any, source: str) -> Family:
    family = FAMILIES.get(model_type)
    if family is None:
        raise ValueError(
            f"{source}: unsupported model_type {model_type!r}; supported: {', '.join(sorted(FAMILIES))}"
        )
    return family


def family_for_export(qkv_bias: bool, qk_norm: bool, model_type: str | None) -> Family:
    """The family named by model_type, else the one whose fixed facts match (qwen2, qwen3 or llama)."""
    if model_type is None:
        model_type = "qwen2" if qkv_bias else "qwen3" if qk_norm else "llama"
    family = family_named(model_type, "to_hf")
    if (family.qkv_bias, family.qk_norm) != (qkv_bias, qk_norm):
        raise ValueError(
            f"to_hf: a model with qkv_bias={qkv_bias}, qk_norm={qk_norm} cannot be written as "
            f"{model_type!r}, which has qkv_bias={family.qkv_bias}, qk_norm={family.qk_norm}"
        )
    return family
