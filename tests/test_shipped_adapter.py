"""The draft adapter shipped at apps/trimode/adapters/smollm2-135m (what `make adapter-demo` loads)
on SmolLM2-135M-Instruct: it names this base by fingerprint and its training layout, it changes the
draft forwards, and it changes nothing else: AR decoding with it is the base's token for token, and
self-speculation with it (plain, fused, quadratic) reproduces AR greedy. Float64, so no near ties."""

import copy
import json
from pathlib import Path

import pytest
import torch

from dlm.attention import Causal, Draft
from dlm.core import load_model
from dlm.core.adapter import base_fingerprint, load_adapter
from dlm.core.chat import frame_code_prompt
from dlm.core.checkpoint import training_of
from dlm.decoding import ARDecoder, FusedSelfSpeculativeDecoder, SelfSpeculativeDecoder
from dlm.decoding.tasks.humaneval import read_problems

pytestmark = pytest.mark.slow

ADAPTER = Path(__file__).resolve().parents[1] / "apps/trimode/adapters/smollm2-135m"


@pytest.fixture(scope="module")
def models(smollm2):
    base, tokenizer = load_model(smollm2)
    adapted = copy.deepcopy(base)
    load_adapter(adapted, ADAPTER)
    return base.double().eval(), adapted.double().eval(), tokenizer


def test_the_shipped_adapter_is_small_and_names_its_base(models):
    base, adapted, _ = models
    size = sum(f.stat().st_size for f in ADAPTER.iterdir())
    assert size <= 25 * 2**20, f"{size} bytes"
    record = json.loads((ADAPTER / "adapter.json").read_text())
    assert record["base"] == base_fingerprint(base) and "dlm" in " ".join(record["command"])
    assert training_of(adapted).block_size == 8 and training_of(base) is None


@torch.no_grad()
def test_the_shipped_adapter_drafts_and_leaves_ar_exact(models):
    base, adapted, tokenizer = models
    problems = list(read_problems().values())[:2]
    prompts = [tokenizer.encode(frame_code_prompt(tokenizer, p["prompt"], "instruct")) for p in problems]
    block = torch.tensor([[prompts[0][-1]] + [adapted.config.mask_token_id] * 7])
    positions = torch.arange(8).unsqueeze(0) + len(prompts[0]) - 1
    cache_base, cache_adapted = base.new_cache(1, 600), adapted.new_cache(1, 600)
    for model, cache in ((base, cache_base), (adapted, cache_adapted)):
        prefix = torch.tensor([prompts[0][:-1]])
        model(prefix, torch.arange(prefix.shape[1]).unsqueeze(0), Causal(), cache=cache)
    mask = Draft((len(prompts[0]) - 1,), 8)
    gate = torch.ones_like(block)
    drafted = adapted(block, positions, mask, cache=cache_adapted, commit=False, draft=gate)
    plain = base(block, positions, mask, cache=cache_base, commit=False, draft=gate)
    assert not torch.allclose(drafted, plain), "the adapter does not change the draft forward"

    expected, _ = ARDecoder().generate(base, prompts, 32)
    assert ARDecoder().generate(adapted, prompts, 32)[0] == expected
    for decoder in (
        SelfSpeculativeDecoder(),
        FusedSelfSpeculativeDecoder(),
        FusedSelfSpeculativeDecoder(quadratic=True),
    ):
        tokens, stats = decoder.generate(adapted, prompts, 32)
        assert tokens == expected, type(decoder).__name__
        assert stats.tau > 1, f"{type(decoder).__name__} accepted no draft"
