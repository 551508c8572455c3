"""Incremental decoding through the KV cache must reproduce a full forward (the cache is exact)."""

import pytest
import torch

from dlm.attention import Causal, Draft, Verify
from dlm.core import ModelConfig, Transformer


def tiny(**overrides) -> Transformer:
    torch.manual_seed(0)
    cfg = dict(vocab_size=50, dim=32, n_layers=2, n_heads=4, n_kv_heads=2, max_seq_len=64)
    cfg.update(overrides)
    return Transformer(ModelConfig(**cfg)).eval()


def full_logits(model, tokens: list[int]) -> torch.Tensor:
    t = torch.tensor([tokens])
    pos = torch.arange(len(tokens)).unsqueeze(0)
    return model(t, pos, Causal())[0]


@pytest.mark.parametrize("overrides", [{}, {"qk_norm": True, "qkv_bias": True, "tie_embeddings": False}])
def test_incremental_equals_full_forward_ragged_batch(overrides):
    model = tiny(**overrides)
    g = torch.Generator().manual_seed(1)
    seqs = [torch.randint(0, 50, (n,), generator=g).tolist() for n in (12, 7, 9)]
    prompt_lens = [5, 3, 6]
    cache = model.new_cache(batch=3, max_len=32)
    width = max(prompt_lens)
    padded = torch.tensor([s[:p] + [0] * (width - p) for s, p in zip(seqs, prompt_lens)])
    pos = torch.arange(width).expand(3, -1)
    prefill = model(padded, pos, Causal(), cache=cache)
    cache.crop(prompt_lens)
    for row, p in enumerate(prompt_lens):
        ref = full_logits(model, seqs[row][:p])
        torch.testing.assert_close(prefill[row, :p], ref, atol=1e-5, rtol=1e-5)
    # Rows advance by different amounts: each step feeds one token per row, then rows crop back.
    lengths = list(prompt_lens)
    for _ in range(3):
        nxt = torch.tensor([[s[min(n, len(s) - 1)]] for s, n in zip(seqs, lengths)])
        pos = torch.tensor([[n] for n in lengths])
        out = model(nxt, pos, Verify(tuple(lengths), 1), cache=cache)
        for row in range(3):
            n = lengths[row]
            ref = full_logits(model, seqs[row][:n] + [int(nxt[row, 0])])
            torch.testing.assert_close(out[row, 0], ref[-1], atol=1e-5, rtol=1e-5)
        lengths = [n + 1 for n in lengths]
        assert cache.lengths == lengths


def test_crop_and_reappend_equals_full_forward():
    model = tiny()
    seq = torch.randint(0, 50, (10,), generator=torch.Generator().manual_seed(3)).tolist()
    cache = model.new_cache(batch=1, max_len=16)
    model(torch.tensor([seq[:8]]), torch.arange(8).unsqueeze(0), Causal(), cache=cache)
    cache.crop([5])
    block = torch.tensor([seq[5:9]])
    out = model(block, torch.arange(5, 9).unsqueeze(0), Verify((5,), 4), cache=cache)
    torch.testing.assert_close(out[0], full_logits(model, seq[:9])[5:], atol=1e-5, rtol=1e-5)
    assert cache.lengths == [9]


def test_draft_pass_leaves_cache_untouched():
    model = tiny()
    seq = torch.randint(0, 50, (12,), generator=torch.Generator().manual_seed(4)).tolist()
    cache = model.new_cache(batch=1, max_len=20)
    model(torch.tensor([seq[:6]]), torch.arange(6).unsqueeze(0), Causal(), cache=cache)
    k_before = torch.stack(cache.k)[:, :, :, :6].clone()
    model(
        torch.tensor([[7, 7, 7]]), torch.arange(6, 9).unsqueeze(0), Draft((6,), 3), cache=cache, commit=False
    )
    assert cache.lengths == [6]
    assert torch.equal(torch.stack(cache.k)[:, :, :, :6], k_before)
    out = model(torch.tensor([seq[6:8]]), torch.arange(6, 8).unsqueeze(0), Verify((6,), 2), cache=cache)
    torch.testing.assert_close(out[0], full_logits(model, seq[:8])[6:], atol=1e-5, rtol=1e-5)


def test_cache_overflow_is_a_clear_error():
    model = tiny()
    cache = model.new_cache(batch=1, max_len=4)
    with pytest.raises(ValueError, match="KV cache overflow: row 0 holds 0 tokens, 5 more exceed max_len=4"):
        model(torch.zeros(1, 5, dtype=torch.long), torch.arange(5).unsqueeze(0), Causal(), cache=cache)


def test_crop_past_length_is_a_clear_error():
    cache = tiny().new_cache(batch=2, max_len=8)
    cache.advance(3)
    with pytest.raises(ValueError, match="cannot crop row 1 to 5: it holds 3 tokens"):
        cache.crop([2, 5])


@pytest.mark.parametrize("mask_kind", [Verify, Draft])
def test_a_fixed_shape_forward_equals_the_cached_forward(mask_kind):
    # dlm.core.compiled's forward, run eagerly: the whole buffers, a padded mask and tensor slots
    # give the cached forward's logits and leave the same K/V in every used slot, ragged rows too.
    from dlm.core.compiled import fixed_forward

    model = tiny().double()
    g = torch.Generator().manual_seed(2)
    caches = [model.new_cache(batch=3, max_len=24) for _ in range(2)]
    prefix = torch.randint(0, 50, (3, 6), generator=g)
    for cache in caches:
        model(prefix, torch.arange(6).expand(3, -1), Causal(), cache=cache)
        cache.crop([6, 2, 4])
    width = 4
    tokens = torch.randint(0, 50, (3, width), generator=g)
    positions = torch.tensor([[6, 7, 8, 9], [2, 3, 4, 5], [4, 5, 6, 7]])
    mask = mask_kind((6, 2, 4), width)
    want = model(tokens, positions, mask, cache=caches[0], commit=True)
    fixed, index = caches[1], caches[1].slot_index(width)
    got = fixed_forward(
        model, tokens, positions, mask.padded(width, 6 + width, 24), fixed.k, fixed.v, index, None
    )
    fixed.advance(width)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    for row, length in enumerate(caches[0].lengths):
        for buffer in ("k", "v"):
            got, want = (torch.stack(getattr(c, buffer))[:, row, :, :length] for c in (fixed, caches[0]))
            torch.testing.assert_close(got, want)
