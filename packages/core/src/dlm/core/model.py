"""The Llama-family decoder: RMSNorm, RoPE, GQA, SwiGLU, optional q/k norm and QKV bias.

A plain nn.Module. Attention goes through dlm.attention.attend, so the mask object decides the
pattern (causal, block diffusion, draft over a cache, ...) and dispatch picks the kernel.

A draft adapter (dlm.core.adapter) adds low-rank deltas to chosen projections; they act only on
the tokens a per-token `draft` gate marks, so forwards without drafts are the base model's.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dlm.attention import Mask, attend
from dlm.core.cache import FixedView, KVCache, PrefixCache, Slots
from dlm.core.config import ModelConfig
from dlm.core.rope import apply_rope, inverse_frequencies, rope_tables


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        # Normalise in float32 whatever the activation dtype, as the HF reference does, and return
        # the input's dtype: an fp32 weight under bf16 autocast must not promote bf16 q/k (q/k norm).
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight.to(x.dtype) * x32.to(x.dtype)


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.head_dim = hd = cfg.head_size
        self.backend = cfg.attention_backend
        self.q = nn.Linear(cfg.dim, cfg.n_heads * hd, bias=cfg.qkv_bias)
        self.k = nn.Linear(cfg.dim, cfg.kv_heads * hd, bias=cfg.qkv_bias)
        self.v = nn.Linear(cfg.dim, cfg.kv_heads * hd, bias=cfg.qkv_bias)
        self.o = nn.Linear(cfg.n_heads * hd, cfg.dim, bias=False)
        self.q_norm = RMSNorm(hd, cfg.norm_eps) if cfg.qk_norm else None
        self.k_norm = RMSNorm(hd, cfg.norm_eps) if cfg.qk_norm else None
        self.adapters = nn.ModuleDict()

    def forward(
        self,
        x: Tensor,
        cos: Tensor,
        sin: Tensor,
        mask: Mask | Tensor,
        cache: KVCache | FixedView | None,
        layer: int,
        slots: Slots | None,
        draft: Tensor | None = None,
    ) -> Tensor:
        b, t, _ = x.shape
        hd = self.head_dim
        q = project(self, "q", x, draft).view(b, t, -1, hd).transpose(1, 2)
        k = project(self, "k", x, draft).view(b, t, -1, hd).transpose(1, 2)
        v = project(self, "v", x, draft).view(b, t, -1, hd).transpose(1, 2)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if cache is not None:
            k, v = cache.write(layer, k, v, slots)
        if isinstance(mask, Tensor):  # a fixed-shape forward's padded mask over the whole cache
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=q.shape[1] != k.shape[1])
        else:
            out = attend(q, k, v, mask, backend=self.backend)
        return project(self, "o", out.transpose(1, 2).reshape(b, t, -1), draft)


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.gate = nn.Linear(cfg.dim, cfg.mlp_size, bias=False)
        self.up = nn.Linear(cfg.dim, cfg.mlp_size, bias=False)
        self.down = nn.Linear(cfg.mlp_size, cfg.dim, bias=False)
        self.adapters = nn.ModuleDict()

    def forward(self, x: Tensor, draft: Tensor | None = None) -> Tensor:
        h = F.silu(project(self, "gate", x, draft)) * project(self, "up", x, draft)
        return project(self, "down", h, draft)


def project(module: nn.Module, name: str, x: Tensor, draft: Tensor | None) -> Tensor:
    """module.<name>(x), plus its adapter's delta on the tokens `draft` (batch, length) marks. An
    unmarked token gets y + 0 * delta = y: the base's value exactly."""
    y = getattr(module, name)(x)
    if draft is None or name not in module.adapters:
        return y
    return y + draft.unsqueeze(-1).to(y.dtype) * module.adapters[name](x)


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.attn_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.attn = Attention(cfg)
        self.mlp_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.mlp = MLP(cfg)

    def forward(
        self,
        x: Tensor,
        cos: Tensor,
        sin: Tensor,
        mask: Mask | Tensor,
        cache,
        layer,
        slots,
        draft: Tensor | None = None,
    ) -> Tensor:
        x = x + self.attn(self.attn_norm(x), cos, sin, mask, cache, layer, slots, draft)
        return x + self.mlp(self.mlp_norm(x), draft)


class Transformer(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.dim)
        self.layers = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.norm = RMSNorm(config.dim, config.norm_eps)
        self.lm_head = nn.Linear(config.dim, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.lm_head.weight = self.embed.weight
        self.mask_embedding: nn.Parameter | None = None
        """A draft adapter's input-only [MASK] embedding, used on draft tokens (None: the table's row)."""
        self.register_buffer(
            "inv_freq",
            inverse_frequencies(config.head_size, config.rope_theta, config.rope_scaling),
            persistent=False,
        )
        self.reset_parameters()

    @classmethod
    def empty(
        cls, config: ModelConfig, dtype: torch.dtype = torch.float32, device: str = "cpu"
    ) -> Transformer:
        """A model with uninitialised weights, for loading (random init costs minutes at 8B parameters)."""
        with torch.device("meta"):
            model = cls(config)
        model = model.to(dtype).to_empty(device=device)
        # to_empty gives each parameter new storage, which unties a tied head, and leaves the RoPE
        # table (a buffer outside the state dict) blank: restore both.
        if config.tie_embeddings:
            model.lm_head.weight = model.embed.weight
        model.inv_freq = inverse_frequencies(config.head_size, config.rope_theta, config.rope_scaling).to(
            device
        )
        return model

    def reset_parameters(self) -> None:
        """Normal(0, init_std) everywhere; residual output projections scaled by 1/sqrt(2 n_layers)."""
        std = self.config.init_std
        for name, module in self.named_modules():
            if isinstance(module, nn.Linear):
                scale = 1 / math.sqrt(2 * self.config.n_layers) if name.endswith((".o", ".down")) else 1.0
                nn.init.normal_(module.weight, std=std * scale)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, std=std)
            elif isinstance(module, RMSNorm):
                nn.init.ones_(module.weight)

    def forward(
        self,
        tokens: Tensor,
        positions: Tensor,
        mask: Mask | Tensor,
        cache: KVCache | FixedView | None = None,
        commit: bool = True,
        draft: Tensor | None = None,
    ) -> Tensor:
        """Logits (batch, length, vocab) for tokens (batch, length) at integer positions (batch, length).

        With a cache, the new tokens' K/V go into each row's next free slots and the mask covers
        (length, max(cache lengths) + length); commit=False leaves the cache's lengths unchanged.
        `draft` (batch, length; bool or 0/1) marks the draft tokens a draft adapter acts on; None
        (or no adapter) is the base model. A tensor mask (rows, 1, length, keys) goes to SDPA as it
        is: a fixed-shape forward's mask over a FixedView's whole buffers (dlm.core.compiled).
        """
        return self.lm_head(self.hidden(tokens, positions, mask, cache, commit, draft))

    def hidden(
        self,
        tokens: Tensor,
        positions: Tensor,
        mask: Mask | Tensor,
        cache: KVCache | FixedView | PrefixCache | None = None,
        commit: bool = True,
        draft: Tensor | None = None,
    ) -> Tensor:
        """Final normalised hidden states; forward() applies the head to them."""
        if tokens.shape != positions.shape:
            raise ValueError(
                f"tokens {tuple(tokens.shape)} and positions {tuple(positions.shape)} differ in shape"
            )
        if draft is not None and draft.shape != tokens.shape:
            raise ValueError(f"draft {tuple(draft.shape)} must have the tokens' shape {tuple(tokens.shape)}")
        x = self.embed(tokens)
        if self.mask_embedding is not None and draft is not None:
            is_mask = ((tokens == self.config.mask_token_id) & draft.bool()).unsqueeze(-1)
            x = torch.where(is_mask, self.mask_embedding.to(x.dtype), x)
        cos, sin = rope_tables(positions, self.inv_freq, x.dtype)
        slots = cache.prepare(tokens.shape[1]) if cache is not None else None
        for i, layer in enumerate(self.layers):
            x = layer(x, cos, sin, mask, cache, i, slots, draft)
        if cache is not None and commit:
            cache.advance(tokens.shape[1])
        return self.norm(x)

    def new_cache(self, batch: int, max_len: int | None = None) -> KVCache:
        """An empty cache for this model's layers and device, in the dtype its K/V projections give:
        the weights' dtype, or the autocast dtype when autocast is on (bf16-mixed decoding)."""
        ref = self.embed.weight
        dtype = ref.dtype
        if torch.is_autocast_enabled(ref.device.type):
            dtype = torch.get_autocast_dtype(ref.device.type)
        return KVCache(
            self.config.n_layers,
            batch,
            self.config.kv_heads,
            self.config.head_size,
            max_len or self.config.max_seq_len,
            dtype=dtype,
            device=ref.device,
        )

    def add_mask_token(self, mask_token_id: int) -> None:
        """Make mask_token_id the [MASK] token, growing the vocabulary when it is past the end.

        New (or reused) rows start at the mean embedding, so [MASK] begins as an average token.
        """
        vocab = self.config.vocab_size
        if mask_token_id < 0 or mask_token_id > vocab:
            raise ValueError(
                f"mask token id {mask_token_id} would leave a gap after the vocabulary of {vocab}"
            )
        if mask_token_id == vocab:
            self._grow_vocab(vocab + 1)
        with torch.no_grad():
            keep = [i for i in range(vocab) if i != mask_token_id]
            self.embed.weight[mask_token_id] = self.embed.weight[keep].mean(0)
            if not self.config.tie_embeddings:
                self.lm_head.weight[mask_token_id] = self.lm_head.weight[keep].mean(0)
        self.config = self.config.replace(mask_token_id=mask_token_id)

    def _grow_vocab(self, new_size: int) -> None:
        old = self.embed
        self.embed = nn.Embedding(new_size, self.config.dim, device=old.weight.device, dtype=old.weight.dtype)
        with torch.no_grad():
            self.embed.weight[: old.num_embeddings] = old.weight
        if self.config.tie_embeddings:
            self.lm_head = nn.Linear(self.config.dim, new_size, bias=False, device="meta")
            self.lm_head.weight = self.embed.weight
        else:
            head = nn.Linear(
                self.config.dim, new_size, bias=False, device=old.weight.device, dtype=old.weight.dtype
            )
            with torch.no_grad():
                head.weight[: old.num_embeddings] = self.lm_head.weight
            self.lm_head = head
        self.config = self.config.replace(vocab_size=new_size)
