"""docs/DESIGN.md ("Training modules") end to end: a tiny model trained with TriModeModule (through the real data module, on a
local corpus of a repeated pattern) drafts the pattern perfectly in diffusion mode and every draft
is accepted in self-speculation, whose output is AR greedy's."""

import json

import lightning.pytorch as pl
import pytest
import torch

from dlm.decoding import (
    ARDecoder,
    BlockDiffusionDecoder,
    FusedSelfSpeculativeDecoder,
    SelfSpeculativeDecoder,
)
from dlm.decoding.evaluation import Evaluation
from dlm.training import Architecture, Optimization, PackedTextDataModule, TriModeModule

ALPHABET = "abcdefghijklmnopqrstuvwxyz"
B = 8
STEPS = 200


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run fastest on one thread, most of all when other jobs share the cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def pattern_corpus(tmp_path):
    """40 documents of the alphabet repeated, each from its own starting letter (so they hash to
    different splits), long enough that the EOS between documents is rare."""
    rows = [{"id": f"doc{i}", "text": (ALPHABET * 80)[i % 26 :][:1500]} for i in range(40)]
    path = tmp_path / "pattern.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


@pytest.mark.slow
def test_a_pattern_is_drafted_perfectly_and_fully_accepted(tmp_path, pattern_corpus):
    torch.manual_seed(0)
    decoders = {
        "ar": ARDecoder(),
        "block": BlockDiffusionDecoder(block_size=B, threshold=0.9, clean="causal"),
        "self_spec": SelfSpeculativeDecoder(k=B - 1),
        "fused": FusedSelfSpeculativeDecoder(k=B - 1),
    }
    module = TriModeModule(
        architecture=Architecture(dim=64, n_layers=2, n_heads=4, max_seq_len=128),
        block_size=B,
        optimization=Optimization(lr=3e-3, warmup_steps=10),
        evaluation=Evaluation(decoders, baseline="ar"),
    )
    data = PackedTextDataModule(
        str(pattern_corpus),
        seq_len=64,
        batch_size=16,
        cache_dir=str(tmp_path / "cache"),
        validation_fraction=0.2,
        test_fraction=0.2,
    )
    trainer = pl.Trainer(
        max_steps=STEPS,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        limit_test_batches=1,
        default_root_dir=tmp_path,
    )
    trainer.fit(module, datamodule=data)
    (results,) = trainer.test(module, datamodule=data, verbose=False)
    assert results["test/masked_acc"] > 0.95

    model = module.model.eval()
    prompts = [list(ALPHABET[s:] + ALPHABET[:s])[:10] for s in (0, 5, 13)]
    prompts = [module.tokenizer.encode("".join(p)) for p in prompts]
    expected = [
        module.tokenizer.encode((ALPHABET * 3)[ALPHABET.index(chr(p[-1])) + 1 :][:32]) for p in prompts
    ]
    ar, _ = decoders["ar"].generate(model, prompts, 32)
    assert ar == expected
    block, stats = decoders["block"].generate(model, prompts, 32)
    assert block == expected and stats.tpf > 3, "diffusion mode drafts the pattern"
    spec, stats = decoders["self_spec"].generate(model, prompts, 32)
    assert spec == ar
    assert stats.acceptance_by_position == [1.0] * (B - 1) and stats.tau == B
    assert results["test/self_spec/agreement"] == 1.0 and results["test/self_spec/tau"] == B
    assert results["test/fused/tpf"] > 3 and results["test/block/agreement"] == 1.0
