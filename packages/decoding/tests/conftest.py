"""Shared models: tiny random-init models (float64 for exact comparisons) and one trained tri-mode
model, trained once per session on a counting pattern."""

import pytest
import torch
from pattern_model import counting, train_tri_mode

from dlm.core import ModelConfig, Transformer

VOCAB, MASK = 24, 23


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    """Tiny models run much faster on one thread, and far more so when other jobs share the cores
    (a two-thread tiny matmul spends its time waiting for the other thread)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


PROMPTS = [[3, 1, 4, 1, 5, 9, 2], [6], [5, 3, 5], [8, 9, 7, 9, 3]]


def random_model(token_shift: bool = True, dtype=torch.float64, seed: int = 0, **overrides) -> Transformer:
    """Random weights with a large init, so logits are far from uniform and drafts mostly wrong."""
    torch.manual_seed(seed)
    cfg = dict(
        vocab_size=VOCAB,
        dim=32,
        n_layers=2,
        n_heads=4,
        n_kv_heads=2,
        max_seq_len=256,
        mask_token_id=MASK,
        token_shift=token_shift,
        init_std=0.3,
    )
    cfg.update(overrides)
    return Transformer(ModelConfig(**cfg)).to(dtype).eval()


@pytest.fixture(scope="session")
def shifted():
    return random_model(token_shift=True)


@pytest.fixture(scope="session")
def unshifted():
    return random_model(token_shift=False)


@pytest.fixture(params=[True, False], ids=["shift", "noshift"])
def model(request, shifted, unshifted):
    return shifted if request.param else unshifted


TRAINED_VOCAB, TRAINED_MASK, TRAINED_BLOCK = 17, 16, 4


@pytest.fixture(scope="session")
def trained():
    """Counting mod 16 (stride 1 or 3), tri-mode objective with token shift, block size 4, trained on
    32 positions: decode within them (prompt + budget <= 28), RoPE does not extrapolate further."""
    pattern = counting(16, strides=(1, 3))
    return train_tri_mode(
        pattern, TRAINED_VOCAB, TRAINED_MASK, block_size=TRAINED_BLOCK, seq_len=32, steps=300, dim=32
    )


@pytest.fixture(scope="session")
def make_model():
    return random_model


@pytest.fixture(scope="session")
def prompts():
    return [list(p) for p in PROMPTS]
