"""Every mask against an independent brute-force loop over the attention-patterns table of
docs/DESIGN.md, and its mask_mod evaluated one scalar at a time against its materialize."""

import pytest
import torch

from dlm.attention import (
    Bidirectional,
    BlockCausal,
    BlockDiffusion,
    Causal,
    Draft,
    SameDocument,
    TriMode,
    TriModeNoisy,
    Verify,
)
from dlm.attention.backends.sdpa import _cached_dense_mask


def brute(q_len, kv_len, allowed):
    return torch.tensor([[bool(allowed(q, k)) for k in range(kv_len)] for q in range(q_len)])


def noisy_clean(L, B, clean_rule):
    """The [x_t ; x_0] rule written out case by case from the DESIGN table."""

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


def catalogue():
    """(mask, q_len, kv_len) for every mask family, ragged block sizes included."""
    ids = torch.tensor([[0, 0, 1, 1, 1, 2], [0, 0, 0, 0, 1, 1]])
    return [
        (Causal(), 7, 7),
        (Bidirectional(), 5, 5),
        (BlockCausal(3), 8, 8),
        (BlockDiffusion(4, 8), 16, 16),
        (BlockDiffusion(3, 7), 14, 14),
        (TriMode(4, 8), 16, 16),
        (TriMode(5, 7), 14, 14),
        (TriModeNoisy(4, 8), 8, 16),
        (TriModeNoisy(3, 7) & SameDocument.for_noisy_clean(torch.tensor([[0, 0, 0, 1, 1, 1, 1]])), 7, 14),
        (Draft((2, 0, 5), 3), 3, 8),
        (Verify((2, 0, 5), 3), 3, 8),
        (SameDocument(ids), 6, 6),
        (BlockDiffusion(2, 6) & SameDocument.for_noisy_clean(ids), 12, 12),
        (BlockCausal(2) | Causal(), 6, 6),
    ]


@pytest.mark.parametrize("mask,q_len,kv_len", catalogue(), ids=lambda x: str(x)[:40])
def test_mask_mod_one_scalar_at_a_time_equals_materialize(mask, q_len, kv_len):
    dense = mask.materialize(q_len, kv_len)
    dense = dense if dense.dim() == 3 else dense.unsqueeze(0)
    h = torch.tensor(0)
    for b in range(mask.rows):
        for q in range(q_len):
            for k in range(kv_len):
                got = mask.mask_mod(torch.tensor(b), h, torch.tensor(q), torch.tensor(k))
                assert bool(got) == bool(dense[b, q, k]), (b, q, k)


@pytest.mark.parametrize("L", [1, 5, 8])
def test_square_masks(L):
    assert torch.equal(Causal().materialize(L, L), brute(L, L, lambda q, k: k <= q))
    assert torch.equal(Bidirectional().materialize(L, L), brute(L, L, lambda q, k: True))
    for B in (1, 2, 3, 4):
        want = brute(L, L, lambda q, k, B=B: k // B <= q // B)
        assert torch.equal(BlockCausal(B).materialize(L, L), want)


@pytest.mark.parametrize("L,B", [(8, 2), (8, 4), (6, 4), (5, 1), (4, 4), (7, 3), (3, 8)])
def test_block_diffusion_and_trimode(L, B):
    got = BlockDiffusion(B, L).materialize(2 * L, 2 * L)
    assert torch.equal(got, noisy_clean(L, B, lambda jq, jk, B: jk // B <= jq // B))
    got = TriMode(B, L).materialize(2 * L, 2 * L)
    assert torch.equal(got, noisy_clean(L, B, lambda jq, jk, B: jk <= jq))
    # the noisy rows with the clean half cached first: TriMode's noisy rows, key halves swapped
    want = torch.cat([got[:L, L:], got[:L, :L]], dim=1)
    assert torch.equal(TriModeNoisy(B, L).materialize(L, 2 * L), want)


@pytest.mark.parametrize("prefix,K", [((0,), 3), ((4,), 1), ((2, 5, 0), 3)])
def test_draft_and_verify_per_row(prefix, K):
    kv = max(prefix) + K
    draft, verify = Draft(prefix, K).materialize(K, kv), Verify(prefix, K).materialize(K, kv)
    if len(prefix) == 1:
        draft, verify = draft.unsqueeze(0), verify.unsqueeze(0)
    for r, P in enumerate(prefix):
        assert torch.equal(draft[r], brute(K, kv, lambda q, k, P=P: k < P + K))
        assert torch.equal(verify[r], brute(K, kv, lambda q, k, P=P: k < P or P <= k <= P + q))


@pytest.mark.parametrize("prefix,K", [((0,), 1), ((4,), 3), ((2, 5, 0), 3)])
def test_padded_masks_hide_every_key_past_the_used_ones(prefix, K):
    # A fixed-shape forward attends over the whole preallocated cache: the slots past max(P) + K
    # hold stale K/V and are hidden in every row; before them the mask is the mask.
    kv, total = max(prefix) + K, max(prefix) + K + 5
    rules = {
        Draft: lambda P, q, k: k < P + K,
        Verify: lambda P, q, k: k < P or P <= k <= P + q,
    }
    for kind, allowed in rules.items():
        padded = kind(prefix, K).padded(K, kv, total)
        assert padded.shape == (len(prefix), 1, K, total)
        for r, P in enumerate(prefix):
            want = brute(K, total, lambda q, k, P=P, allowed=allowed: k < kv and allowed(P, q, k))
            assert torch.equal(padded[r, 0], want), (kind, r)
    causal = Causal().padded(3, 3, 5)
    assert causal.shape == (1, 1, 3, 5) and torch.equal(causal[0, 0], brute(3, 5, lambda q, k: k <= q))
    with pytest.raises(ValueError, match="a padded mask needs total >= kv_len, got total=1, kv_len=2"):
        Verify((1,), 1).padded(1, 2, 1)


def test_same_document_per_row_and_noisy_clean_layout():
    ids = torch.tensor([[0, 0, 1, 1, 2], [3, 3, 3, 4, 4]])
    got = SameDocument(ids).materialize(5, 5)
    for r in range(2):
        assert torch.equal(got[r], brute(5, 5, lambda q, k, r=r: ids[r, q] == ids[r, k]))
    L, B = 5, 2
    combined = (TriMode(B, L) & SameDocument.for_noisy_clean(ids)).materialize(2 * L, 2 * L)
    pattern = noisy_clean(L, B, lambda jq, jk, B: jk <= jq)
    for r in range(2):
        want = brute(2 * L, 2 * L, lambda q, k, r=r: pattern[q, k] and ids[r, q % L] == ids[r, k % L])
        assert torch.equal(combined[r], want)


def test_masks_are_hashable_values():
    assert hash(BlockDiffusion(4, 16)) == hash(BlockDiffusion(4, 16))
    assert len({Draft((1, 2), 3), Draft([1, 2], 3), Verify((1, 2), 3)}) == 2
    ids = torch.zeros(1, 4, dtype=torch.long)
    a, b = SameDocument(ids), SameDocument(ids.clone())
    assert a == a and a != b and len({a, b, a}) == 2
    assert hash(Causal() & a) == hash(Causal() & a)
    assert not (Causal() & a).cacheable and (Causal() & BlockCausal(2)).cacheable


def test_sdpa_dense_cache_never_serves_new_document_ids():
    """The dense-mask cache must skip data-built masks: new ids give a new mask."""
    ids = torch.tensor([[0, 0, 1, 1]])
    first = SameDocument(ids)
    assert not first.cacheable
    _cached_dense_mask.cache_clear()
    from dlm.attention import attend

    q = torch.randn(1, 1, 4, 8)
    out_first = attend(q, q, q, first, backend="sdpa")
    ids[0, 2:] = 0  # the same mask object over mutated ids: an identity-keyed cache would be stale
    out_second = attend(q, q, q, first, backend="sdpa")
    assert _cached_dense_mask.cache_info().currsize == 0
    assert not torch.allclose(out_first, out_second)


def test_combinators_flatten_and_compose_elementwise():
    a, b, c = BlockCausal(2), Causal(), Bidirectional()
    for op, ref in ((a & b, torch.logical_and), (a | b, torch.logical_or)):
        assert torch.equal(op.materialize(6, 6), ref(a.materialize(6, 6), b.materialize(6, 6)))
    assert str(a & b) == "BlockCausal(block_size=2) & Causal()"
    assert (a & b & c).parts == (a, b, c)
    assert (a | b | c).parts == (a, b, c)


@pytest.mark.parametrize("bad", [0, -2, 1.5])
def test_bad_block_size_is_named(bad):
    with pytest.raises(ValueError, match=f"block_size must be a positive integer, got {bad}"):
        BlockCausal(bad)
    with pytest.raises(ValueError, match="block_size must be a positive integer"):
        TriMode(bad, 8)


def test_bad_masks_are_named():
    with pytest.raises(ValueError, match="seq_len must be a positive integer, got 0"):
        BlockDiffusion(4, 0)
    with pytest.raises(ValueError, match="covers \\[x_t ; x_0\\] of length 16, got q_len=10"):
        BlockDiffusion(4, 8).materialize(10, 10)
    with pytest.raises(ValueError, match="needs q_len == kv_len"):
        Causal().materialize(3, 4)
    with pytest.raises(ValueError, match="expects q_len=3, kv_len=5, got q_len=3, kv_len=6"):
        Verify((2,), 3).materialize(3, 6)
    with pytest.raises(ValueError, match="prefix_lens must be non-negative"):
        Draft((1, -1), 2)
    with pytest.raises(ValueError, match="doc_ids of shape \\(batch, length\\), got \\(4,\\)"):
        SameDocument(torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="integer doc_ids, got dtype torch.float32"):
        SameDocument(torch.zeros(1, 4))
    with pytest.raises(ValueError, match="covers 4 keys and at most as many queries, got q_len=5"):
        SameDocument(torch.zeros(1, 4, dtype=torch.long)).materialize(5, 5)
    with pytest.raises(ValueError, match="different row counts \\[2, 3\\]"):
        Draft((1, 2), 2) & Verify((1, 2, 3), 2)
