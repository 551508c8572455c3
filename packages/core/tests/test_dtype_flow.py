"""dtype flows from the projections: under bf16 autocast q, k, v stay bf16 through q/k norm, RoPE
and the KV cache (an fp32 table or weight never promotes them), and a bf16 model stays bf16."""

import pytest
import torch

from dlm.attention import Causal, TriMode, Verify
from dlm.core import ModelConfig, Transformer
from dlm.core.rope import apply_rope, inverse_frequencies, rope_tables


def tiny(**changes) -> Transformer:
    torch.manual_seed(0)
    config = dict(vocab_size=40, dim=32, n_layers=2, n_heads=4, n_kv_heads=2, max_seq_len=64, qk_norm=True)
    return Transformer(ModelConfig(**{**config, **changes}))


def test_rope_keeps_the_input_dtype():
    positions = torch.arange(6).unsqueeze(0)
    cos, sin = rope_tables(positions, inverse_frequencies(8, 1e4), torch.float32)
    x = torch.randn(1, 2, 6, 8)
    rotated = apply_rope(x.bfloat16(), cos, sin)
    assert rotated.dtype == torch.bfloat16
    torch.testing.assert_close(rotated.float(), apply_rope(x, cos, sin), atol=3e-2, rtol=2e-2)


@pytest.mark.parametrize(
    "mask,backend",
    [
        (Causal(), None),
        (TriMode(block_size=8, seq_len=16), None),
        (TriMode(block_size=8, seq_len=16), "split"),
    ],
    ids=["causal", "trimode-sdpa", "trimode-split"],
)
def test_autocast_forward_and_backward_match_fp32(mask, backend):
    model = tiny(attention_backend=backend)
    length = 32 if isinstance(mask, TriMode) else 16
    tokens = torch.randint(0, 40, (2, length))
    positions = torch.arange(length).remainder(16).expand(2, -1)
    reference = model(tokens, positions, mask)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(tokens, positions, mask)
        logits.float().logsumexp(-1).mean().backward()
    assert logits.dtype == torch.bfloat16
    assert all(p.grad is not None and p.grad.isfinite().all() for p in model.parameters())
    torch.testing.assert_close(logits.float(), reference, atol=5e-2, rtol=5e-2)


def test_cache_under_autocast_holds_the_projection_dtype():
    model = tiny()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        cache = model.new_cache(1, 16)
        model(torch.randint(0, 40, (1, 5)), torch.arange(5).unsqueeze(0), Causal(), cache)
        logits = model(torch.tensor([[3, 4]]), torch.tensor([[5, 6]]), Verify(5, 2), cache)
    assert cache.dtype == torch.bfloat16 and logits.isfinite().all()


def test_bf16_model_runs_in_bf16():
    model = tiny().to(torch.bfloat16)
    tokens = torch.randint(0, 40, (1, 8))
    cache = model.new_cache(1, 16)
    logits = model(tokens, torch.arange(8).unsqueeze(0), Causal(), cache)
    assert logits.dtype == cache.dtype == torch.bfloat16
