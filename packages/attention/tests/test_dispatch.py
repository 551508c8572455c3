"""Dispatch: priority, forcing (argument and environment), one log line per choice, clear refusals."""

import logging

import pytest
import torch

from dlm.attention import (
    ENV_VAR,
    Bidirectional,
    BlockCausal,
    BlockDiffusion,
    Causal,
    Draft,
    SameDocument,
    TriMode,
    Verify,
    attend,
    refusals,
    select,
)
from dlm.attention import dispatch as dispatch_module


@pytest.fixture(autouse=True)
def no_forcing_from_the_environment(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)


def qkv(length, requires_grad=False, dtype=torch.float32):
    return [torch.randn(2, 4, length, 8, dtype=dtype).requires_grad_(requires_grad) for _ in range(3)]


@pytest.mark.parametrize("requires_grad", [False, True])
def test_priority_on_cpu(requires_grad, monkeypatch):
    monkeypatch.setattr(dispatch_module.BACKENDS["split"], "min_auto_work", 0)
    q, k, v = qkv(16, requires_grad)
    ids = torch.zeros(2, 8, dtype=torch.long)
    assert select(q, k, v, BlockDiffusion(4, 8)).name == "split"
    assert select(q, k, v, TriMode(4, 8) & SameDocument.for_noisy_clean(ids)).name == "split"
    assert select(q, k, v, Causal()).name == "sdpa"
    assert select(q, k, v, BlockDiffusion(4, 8) & Causal()).name == "sdpa"


def test_split_is_left_to_sdpa_below_its_size_threshold_unless_forced():
    split = dispatch_module.BACKENDS["split"]
    q, k, v = qkv(16)  # batch 2 x 4 heads x L^2 = 64: far below the threshold
    assert select(q, k, v, TriMode(4, 8)).name == "sdpa"
    reason = refusals(q, k, v, TriMode(4, 8))["split"]
    assert reason == [
        f"batch*heads*L^2 = 512 < {split.min_auto_work}: too small for split to beat dense SDPA "
        "(force it with backend='split')"
    ]
    assert select(q, k, v, TriMode(4, 8), backend="split").name == "split"
    big = [torch.zeros(2, 4, 2 * 512, 8) for _ in range(3)]  # 2 x 4 x 512^2 = 2^21
    assert select(*big, TriMode(4, 512)).name == "split"


def test_flex_is_never_chosen_on_cpu_but_can_be_forced():
    q, k, v = qkv(8)
    reasons = refusals(q, k, v, Causal())
    assert "only chosen automatically on ['cuda']; on cpu force it with backend='flex'" in reasons["flex"]
    assert dispatch_module.BACKENDS["flex"].not_supported_reasons(q, k, v, Causal(), forced=True) == []


def test_forcing_by_argument_and_by_environment(monkeypatch):
    q, k, v = qkv(16)
    assert select(q, k, v, BlockDiffusion(4, 8), backend="sdpa").name == "sdpa"
    monkeypatch.setenv(ENV_VAR, "sdpa")
    assert select(q, k, v, BlockDiffusion(4, 8)).name == "sdpa"
    assert select(q, k, v, BlockDiffusion(4, 8), backend="split").name == "split"  # argument wins
    monkeypatch.setenv(ENV_VAR, "fast")
    with pytest.raises(
        ValueError, match="unknown attention backend 'fast' \\(from \\$DLM_ATTENTION_BACKEND\\)"
    ):
        attend(q, k, v, BlockDiffusion(4, 8))


def test_forced_backend_that_cannot_run_says_why():
    q, k, v = qkv(8)
    with pytest.raises(
        ValueError,
        match="unknown attention backend 'triton' \\(from the backend argument\\); expected one of",
    ):
        attend(q, k, v, Causal(), backend="triton")
    with pytest.raises(
        ValueError,
        match="attention backend 'split' cannot run Causal\\(\\) on cpu/torch.float32: split runs BlockDiffusion",
    ):
        attend(q, k, v, Causal(), backend="split")


def test_nothing_fits_lists_every_backend():
    q, k, v = (torch.ones(1, 2, 8, 8, dtype=torch.int64) for _ in range(3))
    with pytest.raises(ValueError) as err:
        attend(q, k, v, BlockDiffusion(2, 4))
    message = str(err.value)
    assert message.startswith(
        "no attention backend can run BlockDiffusion(block_size=2, seq_len=4) on cpu/torch.int64"
    )
    for name in ("xformers:", "flex:", "split:", "sdpa: dtype torch.int64 not in"):
        assert name in message


def test_choice_is_logged_once(monkeypatch, caplog):
    monkeypatch.setattr(dispatch_module, "_announced", set())
    monkeypatch.setattr(dispatch_module.BACKENDS["split"], "min_auto_work", 0)
    q, k, v = qkv(16)
    with caplog.at_level(logging.INFO, logger="dlm.attention.dispatch"):
        for _ in range(3):
            attend(q, k, v, TriMode(4, 8))
        attend(q, k, v, Causal(), backend="sdpa")
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "attention: split backend chosen for TriMode on cpu",
        "attention: sdpa backend forced for Causal on cpu",
    ]


def test_bad_inputs_are_named():
    q, k, v = qkv(8)
    with pytest.raises(ValueError, match="must be \\(batch, heads, length, head_dim\\)"):
        attend(q[0], k, v, Causal())
    with pytest.raises(ValueError, match="k and v shapes differ"):
        attend(q, k, v[:, :, :4], Causal())
    with pytest.raises(ValueError, match="differ in batch or head_dim"):
        attend(q, k[:, :, :, :4], v[:, :, :, :4], Causal())
    with pytest.raises(ValueError, match="query heads 4 are not a multiple of key/value heads 3"):
        attend(q, k[:, :3], v[:, :3], Causal())
    with pytest.raises(ValueError, match="dtypes differ: torch.float32, torch.float64"):
        attend(q, k.double(), v, Causal())
    with pytest.raises(ValueError, match="distinguishes 3 batch rows but q has batch 2"):
        attend(q[:, :, :2], k, v, Draft((1, 2, 3), 2))
    with pytest.raises(ValueError, match="covers \\[x_t ; x_0\\] of length 16, got q_len=8"):
        attend(q, k, v, BlockDiffusion(4, 8))


class Inputs:
    """Stands in for a q/k/v tensor on a device this machine may lack: dispatch reads only these."""

    def __init__(self, length, device="cuda", dtype=torch.bfloat16, requires_grad=True):
        self.shape, self.device = (2, 4, length, 64), torch.device(device)
        self.dtype, self.requires_grad = dtype, requires_grad


L = 512  # batch 2 x 4 heads x L^2 = 2^21: big enough for split to be chosen by itself
IDS = torch.zeros(2, L, dtype=torch.long)
# mask -> the backend chosen on CUDA with (xformers and flex) / (xformers, no flex) / (flex only) / neither
CUDA_TABLE = [
    ("causal", Causal(), L, ("xformers", "xformers", "flex", "sdpa")),
    ("bidirectional", Bidirectional(), L, ("xformers", "xformers", "flex", "sdpa")),
    ("draft", Draft((3, 5), 4), 4, ("xformers", "xformers", "flex", "sdpa")),
    ("verify", Verify((3, 5), 4), 4, ("xformers", "xformers", "flex", "sdpa")),
    ("block-causal", BlockCausal(16), L, ("flex", "sdpa", "flex", "sdpa")),
    ("causal & documents", Causal() & SameDocument(IDS), L, ("flex", "sdpa", "flex", "sdpa")),
    ("block diffusion", BlockDiffusion(16, L), 2 * L, ("flex", "split", "flex", "split")),
    ("tri-mode", TriMode(16, L), 2 * L, ("flex", "split", "flex", "split")),
    ("tri-mode & documents", TriMode(16, L) & SameDocument.for_noisy_clean(IDS), 2 * L,
     ("flex", "split", "flex", "split")),
]  # fmt: skip
LIBRARIES = [(True, True), (True, False), (False, True), (False, False)]


@pytest.mark.parametrize("requires_grad", [True, False], ids=["training", "inference"])
@pytest.mark.parametrize("name, mask, length, expected", CUDA_TABLE, ids=[c[0] for c in CUDA_TABLE])
def test_the_choice_on_cuda_for_every_mask(name, mask, length, expected, requires_grad, monkeypatch):
    """xformers is first but claims only the masks it has a structured bias for; the training
    masks go to flex or split, never to xformers' dense tensor bias."""
    backends = dispatch_module.BACKENDS
    for (xformers, flex), want in zip(LIBRARIES, expected, strict=True):
        monkeypatch.setattr(backends["xformers"], "available", lambda x=xformers: None if x else "absent")
        monkeypatch.setattr(backends["flex"], "available", lambda f=flex: None if f else "absent")
        q = Inputs(length, requires_grad=requires_grad)
        got = select(q, q, q, mask).name
        assert got == want, f"{name}, xformers {xformers}, flex {flex}: {got}"
    monkeypatch.setattr(backends["xformers"], "available", lambda: None)
    assert select(q, q, q, mask, backend="xformers").name == "xformers"  # forcing still runs any mask


def test_xformers_says_why_it_leaves_a_mask_to_others(monkeypatch):
    monkeypatch.setattr(dispatch_module.BACKENDS["xformers"], "available", lambda: None)
    q = Inputs(2 * L)
    assert refusals(q, q, q, TriMode(16, L))["xformers"] == [
        f"no structured xformers bias for TriMode(block_size=16, seq_len={L}): a dense tensor bias "
        "is left to the other backends (force it with backend='xformers')"
    ]
