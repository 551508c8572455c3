"""The backbone's typed configuration. Families (Llama, Qwen2, Qwen3, Mistral) differ only here."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ModelConfig:
    """Llama-family decoder hyperparameters."""

    vocab_size: int
    """Rows of the embedding (tokenizer vocabulary, including special tokens such as [MASK])."""
    dim: int = 256
    """Hidden size."""
    n_layers: int = 4
    """Number of transformer blocks."""
    n_heads: int = 4
    """Query heads."""
    n_kv_heads: int | None = None
    """Key/value heads (GQA); None means n_heads."""
    head_dim: int | None = None
    """Per-head size; None means dim // n_heads."""
    hidden_dim: int | None = None
    """SwiGLU inner size; None means 8/3 * dim rounded up to a multiple of 64."""
    rope_theta: float = 10000.0
    """RoPE base."""
    rope_scaling: dict[str, Any] | None = None
    """Llama-3 style frequency scaling (keys: factor, low_freq_factor, high_freq_factor,
    original_max_position_embeddings); None for plain RoPE."""
    norm_eps: float = 1e-5
    """RMSNorm epsilon."""
    qk_norm: bool = False
    """RMSNorm on each head's queries and keys (Qwen3)."""
    qkv_bias: bool = False
    """Bias on the q/k/v projections (Qwen2)."""
    tie_embeddings: bool = True
    """Share the input embedding with the output head."""
    max_seq_len: int = 2048
    """Longest sequence the model is meant for (KV caches default to it)."""
    mask_token_id: int | None = None
    """Id of the [MASK] token for diffusion objectives and decoders; None for a pure AR model."""
    token_shift: bool = True
    """Diffusion logits at position i predict token i+1 (Dream / Fast-dLLM v2); False predicts
    position i itself (the public Nemotron tri-mode code). AR logits always predict the next token."""
    attention_backend: str | None = None
    """Force one attention backend (sdpa, split, flex, xformers); None lets dispatch choose."""
    init_std: float = 0.02
    """Standard deviation of the initial weights."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Family-specific fields kept for export (e.g. the HF model_type), not read by the model."""

    def __post_init__(self) -> None:
        for name in ("vocab_size", "dim", "n_layers", "n_heads", "max_seq_len"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"ModelConfig.{name} must be a positive integer, got {value!r}")
        if self.kv_heads <= 0 or self.n_heads % self.kv_heads:
            raise ValueError(
                f"ModelConfig.n_heads={self.n_heads} must be divisible by n_kv_heads={self.n_kv_heads}"
            )
        if self.head_dim is None and self.dim % self.n_heads:
            raise ValueError(f"ModelConfig.dim={self.dim} is not divisible by n_heads={self.n_heads}")
        if self.head_size % 2:
            raise ValueError(f"head_dim must be even for RoPE, got {self.head_size}")
        if self.mask_token_id is not None and not 0 <= self.mask_token_id < self.vocab_size:
            raise ValueError(
                f"mask_token_id={self.mask_token_id} is outside the vocabulary [0, {self.vocab_size})"
            )

    @property
    def kv_heads(self) -> int:
        return self.n_kv_heads if self.n_kv_heads is not None else self.n_heads

    @property
    def head_size(self) -> int:
        return self.head_dim if self.head_dim is not None else self.dim // self.n_heads

    @property
    def mlp_size(self) -> int:
        if self.hidden_dim is not None:
            return self.hidden_dim
        return -(-(8 * self.dim // 3) // 64) * 64

    def replace(self, **changes: Any) -> ModelConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown ModelConfig fields {unknown}; expected a subset of {sorted(known)}")
        return cls(**data)
