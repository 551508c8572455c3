"""The split backend against SDPA with the materialized mask: forward and gradients, every layout."""

import pytest
import torch
import torch.nn.functional as F

from dlm.attention import And, BlockDiffusion, Causal, SameDocument, TriMode, attend
from dlm.attention.backends import Split
from dlm.attention.backends.chunked import Chunk, Part, chunked_attention
from dlm.attention.backends.split import _plan


def reference(q, k, v, mask):
    dense = mask.materialize(q.shape[2], k.shape[2], device=q.device)
    dense = dense[:, None] if dense.dim() == 3 else dense
    return F.scaled_dot_product_attention(q, k, v, attn_mask=dense, enable_gqa=q.shape[1] != k.shape[1])


def inputs(batch, heads, kv_heads, length, dim=16, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    shapes = [(batch, heads, length, dim), (batch, kv_heads, length, dim), (batch, kv_heads, length, dim)]
    return [torch.randn(s, generator=g).to(dtype).requires_grad_() for s in shapes]


def forward_and_grads(fn, q, k, v, seed=1):
    out = fn(q, k, v)
    grad = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed)).to(out.device, out.dtype)
    return (out, *torch.autograd.grad(out, (q, k, v), grad))


def doc_ids(batch, L, seed):
    """Documents of random lengths, boundaries anywhere (mid-block too)."""
    starts = torch.rand(batch, L, generator=torch.Generator().manual_seed(seed)) < 0.2
    return starts.long().cumsum(1)


LAYOUTS = [(8, 4), (12, 4), (10, 4), (7, 3), (5, 8), (9, 1), (16, 16)]  # (L, B): ragged and B > L too


@pytest.mark.parametrize("family", [BlockDiffusion, TriMode])
@pytest.mark.parametrize("L,B", LAYOUTS)
@pytest.mark.parametrize("budget", [1, 1 << 20])  # one block per chunk; one chunk per half
def test_split_equals_dense_sdpa_fp32(family, L, B, budget):
    mask = family(B, L)
    q, k, v = inputs(2, 4, 2, 2 * L)
    split = Split(score_budget=budget)
    got = forward_and_grads(lambda *x: split.forward(*x, mask), q, k, v)
    want = forward_and_grads(lambda *x: reference(*x, mask), q, k, v)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("family", [BlockDiffusion, TriMode])
@pytest.mark.parametrize("L,B", [(12, 4), (10, 3)])
def test_split_with_same_document_equals_dense_sdpa(family, L, B):
    ids = doc_ids(3, L, seed=L + B)
    mask = family(B, L) & SameDocument.for_noisy_clean(ids)
    q, k, v = inputs(3, 2, 1, 2 * L)
    split = Split(score_budget=3 * 2 * 2 * L * B)  # two blocks per chunk
    got = forward_and_grads(lambda *x: split.forward(*x, mask), q, k, v)
    want = forward_and_grads(lambda *x: reference(*x, mask), q, k, v)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, atol=1e-5, rtol=1e-5)


def test_split_bf16_close_to_fp32_reference():
    L, B = 32, 8
    mask = TriMode(B, L)
    q, k, v = inputs(1, 4, 4, 2 * L, dim=32, dtype=torch.bfloat16)
    got = forward_and_grads(lambda *x: Split(score_budget=512).forward(*x, mask), q, k, v)
    q32, k32, v32 = (x.detach().float().requires_grad_() for x in (q, k, v))
    want = forward_and_grads(lambda *x: reference(*x, mask), q32, k32, v32)
    for g, w in zip(got, want):
        assert g.dtype == torch.bfloat16
        torch.testing.assert_close(g.float(), w, atol=3e-2, rtol=3e-2)


@pytest.mark.parametrize("kv_heads", [2, 4])
def test_split_takes_the_models_transposed_layouts(kv_heads):
    """The backbone hands over (b, L, h, d) projections transposed to (b, h, L, d), and the gradient
    flowing back is transposed the same way: nothing may assume contiguity."""
    L, B = 12, 4
    mask = TriMode(B, L)
    g = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(2, 2 * L, h, 16, generator=g).requires_grad_() for h in (4, kv_heads, kv_heads))
    grad = torch.randn(2, 2 * L, 4, 16, generator=g).transpose(1, 2)
    got = Split(score_budget=200).forward(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), mask)
    want = reference(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), mask)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    for a, b in zip(torch.autograd.grad(got, (q, k, v), grad), torch.autograd.grad(want, (q, k, v), grad)):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_split_forward_without_grad_matches():
    mask = BlockDiffusion(4, 12)
    q, k, v = (x.detach() for x in inputs(1, 2, 2, 24))
    with torch.no_grad():
        torch.testing.assert_close(Split().forward(q, k, v, mask), reference(q, k, v, mask))


def test_split_scores_about_a_quarter_of_the_dense_pass():
    """The plan never scores a noisy query against the noisy half outside its own chunk, nor a clean
    query against the noisy half: far fewer scores than the dense (2L)^2."""
    L, B, rows = 256, 16, 32
    for causal in (False, True):
        chunks = _plan(causal, L, B, rows, torch.device("cpu"))
        scored = sum((c.end - c.start) * (p.end - p.start) for c in chunks for p in c.parts)
        assert scored <= 0.3 * (2 * L) ** 2
        assert sorted((c.start, c.end) for c in chunks) == [(s, s + rows) for s in range(0, 2 * L, rows)]


def test_split_declines_other_masks_and_dispatch_falls_back():
    q = torch.randn(1, 2, 8, 16)
    split = Split()
    for mask in (Causal(), And((BlockDiffusion(2, 4), Causal()))):
        reasons = split.not_supported_reasons(q, q, q, mask)
        assert any("split runs BlockDiffusion / TriMode" in r for r in reasons)
    assert split.not_supported_reasons(q, q, q, TriMode(2, 4), forced=True) == []
    torch.testing.assert_close(
        attend(q, q, q, BlockDiffusion(2, 4) & Causal()), reference(q, q, q, BlockDiffusion(2, 4) & Causal())
    )


def test_chunked_engine_zeros_for_rows_without_keys():
    q = torch.randn(1, 2, 4, 8, requires_grad=True)
    blocked = torch.tensor([[True, True], [False, True]])
    chunks = [Chunk(0, 2, (Part(0, 2, blocked),))]  # row 0 sees nothing, rows 2-3 are in no chunk
    out = chunked_attention(q, q, q, chunks)
    assert torch.isfinite(out).all() and out[:, :, 0].abs().max() == 0 and out[:, :, 2:].abs().max() == 0
    out.sum().backward()
    assert torch.isfinite(q.grad).all()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.bfloat16, 3e-2)])
def test_split_cuda_equals_dense_sdpa(dtype, tol):
    torch.backends.cuda.matmul.allow_tf32 = False
    L, B = 40, 8
    ids = doc_ids(2, L, seed=5).cuda()
    for mask in (BlockDiffusion(B, L), TriMode(B, L), TriMode(B, L) & SameDocument.for_noisy_clean(ids)):
        q, k, v = (x.detach().cuda().requires_grad_() for x in inputs(2, 4, 2, 2 * L, dtype=dtype))
        got = forward_and_grads(lambda *x, m=mask: Split(score_budget=2048).forward(*x, m), q, k, v)
        want = forward_and_grads(lambda *x, m=mask: reference(*x, m), q, k, v)
        for g, w in zip(got, want):
            torch.testing.assert_close(g, w, atol=tol, rtol=tol, msg=str(mask))
