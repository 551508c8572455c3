"""FlexAttention against SDPA with the materialized mask. CPU: forward only, and compiling takes
seconds per mask, hence the slow mark. CUDA: forward and gradients (marked gpu)."""

import pytest
import torch

from dlm.attention import Causal, attend
from dlm.attention.backends import Flex

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def test_flex_declines_cpu_inputs_that_need_grad():
    q = torch.randn(1, 2, 8, 16, requires_grad=True)
    reasons = Flex().not_supported_reasons(q, q, q, Causal(), forced=True)
    assert reasons == ["no backward on cpu, and the inputs require grad"]
    with pytest.raises(ValueError, match="'flex' cannot run Causal\\(\\) on cpu/torch.float32: no backward"):
        attend(q, q, q, Causal(), backend="flex")


@pytest.mark.slow
def test_flex_cpu_forward_equals_sdpa(mask_cases, qkv, reference):
    wanted = {"causal", "tri_mode_ragged", "verify", "block_diffusion_and_docs"}
    for name, mask, q_len, kv_len in mask_cases:
        if name not in wanted:
            continue
        q, k, v = qkv(q_len, kv_len)
        with torch.no_grad():
            got = attend(q, k, v, mask, backend="flex")
        torch.testing.assert_close(got, reference(q, k, v, mask), atol=1e-5, rtol=1e-5, msg=name)


@pytest.mark.gpu
@cuda
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.bfloat16, 3e-2)])
def test_flex_cuda_forward_and_grads_equal_sdpa(mask_cases, qkv, reference, dtype, tol):
    torch.backends.cuda.matmul.allow_tf32 = False
    for name, mask, q_len, kv_len in mask_cases:
        q, k, v = qkv(q_len, kv_len, device="cuda", dtype=dtype, requires_grad=True)
        got = attend(q, k, v, mask, backend="flex")
        want = reference(q, k, v, mask)
        torch.testing.assert_close(got, want, atol=tol, rtol=tol, msg=name)
        grad = torch.randn_like(got)
        for g, w in zip(
            torch.autograd.grad(got, (q, k, v), grad), torch.autograd.grad(want, (q, k, v), grad)
        ):
            torch.testing.assert_close(g, w, atol=tol, rtol=tol, msg=name)
