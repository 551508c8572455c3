"""FlexAttention: the mask's mask_mod compiled into a block-sparse kernel, with a cached BlockMask.

GPU training and inference. On CPU it runs forward only (torch has no CPU backward for it) and
compiling takes seconds, so dispatch picks it by itself on CUDA only; force it on CPU by name.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor

from dlm.attention.backends.base import Backend
from dlm.attention.backends.optional import flex_missing
from dlm.attention.masks import Mask


class Flex(Backend):
    name = "flex"
    devices = frozenset({"cuda", "cpu"})
    auto_devices = frozenset({"cuda"})
    grad_devices = frozenset({"cuda"})
    dtypes = frozenset({torch.float16, torch.bfloat16, torch.float32})

    def available(self) -> str | None:
        return flex_missing()

    def describe(self) -> str:
        return "masks: every mask (through mask_mod); BlockMask cached per (mask, shape, device)"

    def forward(self, q: Tensor, k: Tensor, v: Tensor, mask: Mask) -> Tensor:
        if mask.cacheable:
            block_mask = _cached_block_mask(mask, q.shape[2], k.shape[2], q.device)
        else:
            block_mask = block_mask_for(mask, q.shape[2], k.shape[2], q.device)
        kernel = _compiled_flex(dynamic=q.device.type != "cpu")
        return kernel(q, k, v, block_mask=block_mask, enable_gqa=q.shape[1] != k.shape[1])


def block_mask_for(mask: Mask, q_len: int, kv_len: int, device: torch.device):
    from torch.nn.attention.flex_attention import create_block_mask

    # FlexAttention tells mask_mod from score_mod by counting positional parameters, so it needs a
    # plain four-argument function rather than the bound method.
    def mask_mod(b, h, q_idx, kv_idx):
        return mask.mask_mod(b, h, q_idx, kv_idx)

    rows = mask.rows if mask.rows > 1 else None
    return create_block_mask(mask_mod, rows, None, q_len, kv_len, device=str(device))


# Decoding builds a new Draft/Verify mask every step, so the cache is bounded; data-built masks
# (SameDocument) skip it, see Mask.cacheable.
_cached_block_mask = functools.lru_cache(maxsize=64)(block_mask_for)


@functools.cache
def _compiled_flex(dynamic: bool):
    """The compiled kernel. Symbolic shapes let decoding reuse one GPU kernel as the cache grows;
    inductor's CPU flex template fails to compile with them (torch 2.13), so CPU compiles per shape."""
    from torch.nn.attention.flex_attention import flex_attention

    return torch.compile(flex_attention, dynamic=None if dynamic else False)
