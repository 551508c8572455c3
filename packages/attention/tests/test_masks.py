"""Every mask's dense form against an independent brute-force loop over the DESIGN §3 table."""

import pytest
import torch

from dlm.attention import Bidirectional, BlockCausal, BlockDiffusion, Causal, Draft, TriMode, Verify


def brute(q_len, kv_len, allowed):
    return torch.tensor([[bool(allowed(q, k)) for k in range(kv_len)] for q in range(q_len)])


@pytest.mark.parametrize("L", [1, 5, 8])
def test_square_masks(L):
    assert torch.equal(Causal().materialize(L, L), brute(L, L, lambda q, k: k <= q))
    assert torch.equal(Bidirectional().materialize(L, L), brute(L, L, lambda q, k: True))
    for B in (1, 2, 3, 4):
        want = brute(L, L, lambda q, k, B=B: k // B <= q // B)
        assert torch.equal(BlockCausal(B).materialize(L, L), want)


def noisy_clean(L, B, clean_rule):
    def allowed(q, k):
        nq, nk = q < L, k < L
        jq, jk = q % L, k % L
        if nq and nk:
            return jq // B == jk // B
        if nq and not nk:
            return jk // B < jq // B
        if not nq and not nk:
            return clean_rule(jq, jk, B)
        return False

    return brute(2 * L, 2 * L, allowed)


@pytest.mark.parametrize("L,B", [(8, 2), (8, 4), (6, 4), (5, 1), (4, 4)])
def test_block_diffusion_and_trimode(L, B):
    got = BlockDiffusion(B, L).materialize(2 * L, 2 * L)
    assert torch.equal(got, noisy_clean(L, B, lambda jq, jk, B: jk // B <= jq // B))
    got = TriMode(B, L).materialize(2 * L, 2 * L)
    assert torch.equal(got, noisy_clean(L, B, lambda jq, jk, B: jk <= jq))


@pytest.mark.parametrize("prefix,K", [((0,), 3), ((4,), 1), ((2, 5, 0), 3)])
def test_draft_and_verify_per_row(prefix, K):
    kv = max(prefix) + K
    draft, verify = Draft(prefix, K).materialize(K, kv), Verify(prefix, K).materialize(K, kv)
    if len(prefix) == 1:
        draft, verify = draft.unsqueeze(0), verify.unsqueeze(0)
    for r, P in enumerate(prefix):
        assert torch.equal(draft[r], brute(K, kv, lambda q, k, P=P: k < P + K))
        assert torch.equal(verify[r], brute(K, kv, lambda q, k, P=P: k < P or P <= k <= P + q))


def test_masks_are_hashable_values():
    assert hash(BlockDiffusion(4, 16)) == hash(BlockDiffusion(4, 16))
    assert len({Draft((1, 2), 3), Draft([1, 2], 3), Verify((1, 2), 3)}) == 2


@pytest.mark.parametrize("bad", [0, -2, 1.5])
def test_bad_block_size_is_named(bad):
    with pytest.raises(ValueError, match=f"block_size must be a positive integer, got {bad}"):
        BlockCausal(bad)


def test_shape_mismatch_is_named():
    with pytest.raises(ValueError, match="covers \\[x_t ; x_0\\] of length 16, got q_len=10"):
        BlockDiffusion(4, 8).materialize(10, 10)
    with pytest.raises(ValueError, match="needs q_len == kv_len"):
        Causal().materialize(3, 4)


def test_composition_is_elementwise():
    a, b = BlockCausal(2), Causal()
    for op, ref in ((a & b, torch.logical_and), (a | b, torch.logical_or)):
        assert torch.equal(op.materialize(6, 6), ref(a.materialize(6, 6), b.materialize(6, 6)))
    assert str(a & b) == "BlockCausal(block_size=2) & Causal()"
