"""xformers memory_efficient_attention on CUDA (xformers has no CPU kernels).

Structured biases where xformers has one: LowerTriangularMask for Causal, no bias for Bidirectional,
the padded-keys block-diagonal biases for Draft / Verify over a KV cache (rows flattened into one
sequence, each row's unused cache slots masked by its key length). Dispatch picks xformers only for
those masks; any other (the BlockDiffusion / TriMode training masks, document masks) is left to
flex, split or sdpa, and runs here only when forced, as a dense additive tensor bias built from
materialize().
"""

from __future__ import annotations

import torch
from torch import Tensor

from dlm.attention.backends.base import Backend
from dlm.attention.backends.optional import xformers_missing
from dlm.attention.masks import Bidirectional, Mask

# xformers reads a tensor bias with 16-byte aligned rows; a padded allocation sliced back gives that.
_ALIGN = 8


def structured(mask: Mask) -> bool:
    """Whether xformers runs `mask` without a dense bias: Bidirectional needs none, and a mask class
    that defines xformers_bias (Causal, Draft, Verify) has one. Decided from the class, so it holds
    without importing xformers."""
    return isinstance(mask, Bidirectional) or type(mask).xformers_bias is not Mask.xformers_bias


class XFormers(Backend):
    name = "xformers"
    devices = frozenset({"cuda"})
    dtypes = frozenset({torch.float16, torch.bfloat16, torch.float32})

    def available(self) -> str | None:
        return xformers_missing()

    def auto_reasons(self, q: Tensor, k: Tensor, v: Tensor, mask: Mask) -> list[str]:
        if structured(mask):
            return []
        return [
            f"no structured xformers bias for {mask}: a dense tensor bias is left to the other "
            "backends (force it with backend='xformers')"
        ]

    def describe(self) -> str:
        return (
            "masks: chosen for Bidirectional, Causal, Draft, Verify (structured biases); "
            "any other mask only when forced (dense tensor bias)"
        )

    def forward(self, q: Tensor, k: Tensor, v: Tensor, mask: Mask) -> Tensor:
        from xformers.ops import fmha

        b, h, q_len, d = q.shape
        kv_len = k.shape[2]
        if k.shape[1] != h:  # GQA: plain BMHK is supported by every xformers kernel
            k, v = k.repeat_interleave(h // k.shape[1], 1), v.repeat_interleave(h // v.shape[1], 1)
        q, k, v = (x.transpose(1, 2) for x in (q, k, v))  # (batch, length, heads, head_dim)
        bias = self._bias(mask, q_len, kv_len, b, h, q.dtype, q.device)
        # Both named: Verify's class subclasses Draft's in every release >= 0.0.25 (read in
        # 0.0.28-0.0.35 and mslk's re-export), but not before, and the flattening must not hang on it.
        padded = (
            fmha.attn_bias.BlockDiagonalPaddedKeysMask,
            fmha.attn_bias.BlockDiagonalCausalWithOffsetPaddedKeysMask,
        )
        if isinstance(bias, padded):
            flat = fmha.memory_efficient_attention(
                q.reshape(1, b * q_len, h, d),
                k.reshape(1, b * kv_len, h, d),
                v.reshape(1, b * kv_len, h, -1),
                attn_bias=bias,
            )
            return flat.view(b, q_len, h, -1).transpose(1, 2)
        return fmha.memory_efficient_attention(q, k, v, attn_bias=bias).transpose(1, 2)

    @staticmethod
    def _bias(mask: Mask, q_len: int, kv_len: int, batch: int, heads: int, dtype, device):
        if isinstance(mask, Bidirectional):
            return None
        structured = mask.xformers_bias(q_len, kv_len)
        if structured is not None:
            return structured
        allowed = mask.materialize(q_len, kv_len, device=device)
        allowed = allowed if allowed.dim() == 3 else allowed.unsqueeze(0)
        padded = -(-kv_len // _ALIGN) * _ALIGN
        bias = torch.full((allowed.shape[0], 1, q_len, padded), float("-inf"), dtype=dtype, device=device)
        bias[..., :kv_len].masked_fill_(allowed.unsqueeze(1), 0.0)
        return bias[..., :kv_len].expand(batch, heads, q_len, kv_len)
