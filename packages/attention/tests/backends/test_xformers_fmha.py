"""xformers against SDPA with the materialized mask, on CUDA only (xformers has no CPU kernels)."""

import pytest
import torch

from dlm.attention import Causal, attend
from dlm.attention.backends import XFormers
from dlm.attention.backends.optional import xformers_missing

needs_xformers = pytest.mark.skipif(
    not torch.cuda.is_available() or xformers_missing() is not None,
    reason=f"needs a CUDA device and xformers ({xformers_missing() or 'xformers present'}; "
    f"cuda available: {torch.cuda.is_available()})",
)


def test_xformers_refusal_says_why_here():
    q = torch.randn(1, 2, 8, 16)
    reasons = XFormers().not_supported_reasons(q, q, q, Causal(), forced=True)
    missing = xformers_missing()
    assert reasons == ([missing] if missing else ["device cpu not in ['cuda']"])
    with pytest.raises(ValueError, match="attention backend 'xformers' cannot run Causal"):
        attend(q, q, q, Causal(), backend="xformers")


@pytest.mark.gpu
@needs_xformers
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.bfloat16, 3e-2)])
def test_xformers_forward_equals_sdpa(mask_cases, qkv, reference, dtype, tol):
    torch.backends.cuda.matmul.allow_tf32 = False
    for name, mask, q_len, kv_len in mask_cases:
        q, k, v = qkv(q_len, kv_len, device="cuda", dtype=dtype)
        torch.testing.assert_close(
            attend(q, k, v, mask, backend="xformers"), reference(q, k, v, mask), atol=tol, rtol=tol, msg=name
        )


@pytest.mark.gpu
@needs_xformers
def test_xformers_grads_equal_sdpa_for_training_masks(mask_cases, qkv, reference):
    for name, mask, q_len, kv_len in mask_cases:
        if name in ("draft", "verify"):  # decoding masks: padded-keys biases run forward only
            continue
        q, k, v = qkv(q_len, kv_len, device="cuda", requires_grad=True)
        got, want = attend(q, k, v, mask, backend="xformers"), reference(q, k, v, mask)
        grad = torch.randn_like(got)
        for g, w in zip(
            torch.autograd.grad(got, (q, k, v), grad), torch.autograd.grad(want, (q, k, v), grad)
        ):
            torch.testing.assert_close(g, w, atol=1e-4, rtol=1e-4, msg=name)
