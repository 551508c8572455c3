"""The model shape a YAML sets; the vocabulary comes from the tokenizer, or from the checkpoint."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from dlm.core import ModelConfig

# A checkpoint's value of these may be changed by the YAML; every other field must agree with it.
OVERRIDABLE = ("token_shift", "attention_backend", "max_seq_len")


@dataclass(frozen=True)
class Architecture:
    """dlm.core.ModelConfig's fields, all optional. From scratch, None takes ModelConfig's default
    (vocab_size: the tokenizer's). With `init_from`, None takes the checkpoint's value; a value set
    here must equal the checkpoint's, except token_shift, attention_backend and max_seq_len, which
    it overrides, and n_layers, which may be smaller: the model keeps the checkpoint's first n_layers
    blocks (embeddings, final norm and head kept), as a drafter starting from its target does."""

    vocab_size: int | None = None
    """Rows of the embedding; None means the tokenizer's vocabulary (from scratch)."""
    dim: int | None = None
    """Hidden size."""
    n_layers: int | None = None
    """Number of transformer blocks."""
    n_heads: int | None = None
    """Query heads."""
    n_kv_heads: int | None = None
    """Key/value heads (GQA)."""
    head_dim: int | None = None
    """Per-head size."""
    hidden_dim: int | None = None
    """SwiGLU inner size."""
    rope_theta: float | None = None
    """RoPE base."""
    rope_scaling: dict[str, Any] | None = None
    """Llama-3 style RoPE frequency scaling."""
    norm_eps: float | None = None
    """RMSNorm epsilon."""
    qk_norm: bool | None = None
    """RMSNorm on queries and keys (Qwen3)."""
    qkv_bias: bool | None = None
    """Bias on the q/k/v projections (Qwen2)."""
    tie_embeddings: bool | None = None
    """Share the input embedding with the output head."""
    max_seq_len: int | None = None
    """Longest sequence the model is meant for."""
    token_shift: bool | None = None
    """Diffusion logits at i predict token i+1 (True, ModelConfig's default) or token i."""
    attention_backend: str | None = None
    """Force one attention backend (sdpa, split, flex, xformers); None lets dispatch choose."""
    init_std: float | None = None
    """Standard deviation of the initial weights (from scratch)."""

    def given(self) -> dict[str, Any]:
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if getattr(self, f.name) is not None
        }

    def build(self, tokenizer_vocab: int) -> ModelConfig:
        """A from-scratch ModelConfig for a tokenizer of `tokenizer_vocab` tokens."""
        fields = self.given()
        vocab = fields.setdefault("vocab_size", tokenizer_vocab)
        if vocab < tokenizer_vocab:
            raise ValueError(
                f"architecture.vocab_size={vocab} is smaller than the tokenizer's {tokenizer_vocab} tokens"
            )
        return ModelConfig(**fields)

    def apply(self, config: ModelConfig, source: str) -> ModelConfig:
        """`config` (a checkpoint's) with the overridable fields replaced; any other difference is an error."""
        changes = {}
        for name, value in self.given().items():
            if name in OVERRIDABLE:
                changes[name] = value
            elif name == "n_layers" and value != config.n_layers:
                if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= config.n_layers:
                    raise ValueError(
                        f"{source}: the checkpoint has n_layers={config.n_layers} but the config sets "
                        f"architecture.n_layers={value!r}; only 1 to {config.n_layers} (its first "
                        "blocks) can be kept"
                    )
                changes[name] = value
            elif getattr(config, name) != value:
                raise ValueError(
                    f"{source}: the checkpoint has {name}={getattr(config, name)!r} but the config sets "
                    f"architecture.{name}={value!r}"
                )
        return config.replace(**changes)
