"""The reference itself: the SDPA backend against softmax written out in float64 from the mask."""

import torch

from dlm.attention.backends import SDPA


def naive(q, k, v, allowed):
    g = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(g, 1), v.repeat_interleave(g, 1)
    scores = q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5
    allowed = allowed[:, None] if allowed.dim() == 3 else allowed
    return torch.softmax(scores.masked_fill(~allowed, float("-inf")), -1) @ v


def test_sdpa_backend_equals_naive_softmax_for_every_mask(mask_cases, qkv):
    for name, mask, q_len, kv_len in mask_cases:
        q, k, v = qkv(q_len, kv_len, dtype=torch.float64)
        want = naive(q, k, v, mask.materialize(q_len, kv_len))
        torch.testing.assert_close(SDPA().forward(q, k, v, mask), want, msg=name)
