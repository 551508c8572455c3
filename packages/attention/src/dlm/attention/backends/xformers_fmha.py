"""xformers memory_efficient_attention on CUDA (xformers has no CPU kernels).

Structured biases where xformers has one: LowerTriangularMask for Causal, no bias for Bidirectional,
the padded-keys block-diagonal biases for Draft / Verify over a KV cache (rows flattened into one
sequence, each row's unused cache slots masked by its key length). Every other mask goes in as a
dense additive tensor bias built from materialize().
"""

from __future__ import annotations

import torch
from torch import Tensor

from dlm.attention.backends.base import Backend
from dlm.attention.backends.optional import xformers_missing
from dlm.attention.masks import Bidirectional, Mask

# xformers reads a tensor bias with 16-byte aligned rows; a padded allocation sliced back gives that.
_ALIGN = 8


class XFormers(Backend):
    name = "xformers"
    devices = frozenset({"cuda"})
    dtypes = frozenset({torch.float16, torch.bfloat16, torch.float32})

    def available(self) -> str | None:
        return xformers_missing()

    def describe(self) -> str:
        return "masks: every mask (structured bias for Causal, Draft, Verify; tensor bias otherwise)"

    def forward(self, q: Tensor, k: Tensor, v: Tensor, mask: Mask) -> Tensor:
        from xformers.ops import fmha

        b, h, q_len, d = q.shape
        kv_len = k.shape[2]
        if k.shape[1] != h:  # GQA: plain BMHK is supported by every xformers kernel
            k, v = k.repeat_interleave(h // k.shape[1], 1), v.repeat_interleave(h // v.shape[1], 1)
        q, k, v = (x.transpose(1, 2) for x in (q, k, v))  # (batch, length, heads, head_dim)
        bias = self._bias(mask, q_len, kv_len, b, h, q.dtype, q.device)
        if isinstance(bias, fmha.attn_bias.BlockDiagonalPaddedKeysMask):
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
