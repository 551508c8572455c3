from dataclasses import dataclass

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from dlm.attention import BlockDiffusion
from dlm.core import DecodeStats, load_model
from dlm.core.losses import MaskedDiffusionLoss
from dlm.core.masking import PositionDependent, Uniform
from dlm.decoding.evaluation import Evaluation
from dlm.training import (
    Architecture,
    ARLanguageModel,
    BidirectionalPattern,
    ConversionModule,
    ExportCheckpoint,
    Optimization,
    PackedTextDataModule,
)

TINY = Architecture(dim=32, n_layers=2, n_heads=2, max_seq_len=64)


def batch(n=2, length=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {
        "tokens": torch.randint(0, 256, (n, length), generator=g),
        "doc_ids": torch.zeros(n, length, dtype=torch.long),
        "index": torch.arange(n) + 5,
    }


def test_conversion_objective_is_corruption_then_block_diffusion_then_loss():
    torch.manual_seed(0)
    module = ConversionModule(architecture=TINY, block_size=8, corruption=Uniform(), seed=3)
    b = batch()
    loss, corrupted, _ = module.objective(b, epoch=2)
    ref = Uniform()(b["tokens"], b["index"], 2, 8, 258, 3)
    assert torch.equal(corrupted.mask, ref.mask)
    tokens = torch.cat([ref.tokens, b["tokens"]], 1)
    pos = torch.arange(32).repeat(2).expand(2, -1)
    logits = module.model(tokens, pos, BlockDiffusion(8, 32))[:, :32]
    expected = MaskedDiffusionLoss()(logits, b["tokens"], ref.mask, ref.weights, 8, True, True)
    torch.testing.assert_close(loss, expected)


def test_block_causal_pattern_hides_the_future_and_bidirectional_does_not():
    torch.manual_seed(0)
    module = ConversionModule(architecture=TINY, block_size=8).eval()
    b = batch(1)
    noisy = b["tokens"].clone()
    noisy[:, 1:8] = 258
    base = module(noisy, b["tokens"])
    later = b["tokens"].clone()
    later[:, 8:] = (later[:, 8:] + 1) % 256  # clean blocks from 1 on
    noisy_later = noisy.clone()
    noisy_later[:, 8:] = later[:, 8:]
    torch.testing.assert_close(module(noisy_later, later)[:, :8], base[:, :8])
    assert not torch.allclose(module(noisy_later, later)[:, 8:], base[:, 8:])
    module.pattern = BidirectionalPattern()
    assert not torch.allclose(module(noisy_later, later)[:, :8], module(noisy, b["tokens"])[:, :8])
    assert BidirectionalPattern.cross_block_targets is False


def test_same_document_stops_attention_across_documents():
    torch.manual_seed(0)
    module = ARLanguageModel(architecture=TINY, same_document=True).eval()
    b = batch(1)
    b["doc_ids"][:, 16:] = 1
    other = {**b, "tokens": b["tokens"].clone()}
    other["tokens"][:, :16] = (other["tokens"][:, :16] + 3) % 256
    torch.testing.assert_close(
        module(other["tokens"], b["doc_ids"])[:, 16:], module(b["tokens"], b["doc_ids"])[:, 16:]
    )
    conv = ConversionModule(architecture=TINY, block_size=8, same_document=True).eval()
    out = conv(b["tokens"], b["tokens"], b["doc_ids"])
    torch.testing.assert_close(conv(other["tokens"], other["tokens"], b["doc_ids"])[:, 16:], out[:, 16:])


@dataclass
class FakeDecoder:
    """Appends the prompt's last token max_new_tokens times in max_new_tokens / 2 "forwards"."""

    calls: int = 0
    needs_drafter = False

    def check(self, model):
        pass

    def bind_drafter(self, drafter):
        raise ValueError("FakeDecoder drafts with its model")

    def generate(self, model, prompts, max_new_tokens):
        self.calls += 1
        assert model.config.mask_token_id is not None
        outs = [[p[-1]] * max_new_tokens for p in prompts]
        return outs, DecodeStats(
            forwards={"target": len(prompts) * max_new_tokens // 2}, tokens=len(prompts) * max_new_tokens
        )


def trainer(tmp_path, steps=2):
    return pl.Trainer(
        max_steps=steps,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=1,
        limit_test_batches=2,
        val_check_interval=steps,
        default_root_dir=tmp_path,
        callbacks=[
            ModelCheckpoint(dirpath=tmp_path / "checkpoints", save_last=True, save_top_k=0),
            ExportCheckpoint(str(tmp_path / "model")),
        ],
    )


@pytest.mark.slow
def test_pretrain_then_convert_with_checkpoints_metrics_and_decoders(tmp_path, corpus_dir, cache_dir):
    data = dict(
        corpus=str(corpus_dir),
        seq_len=32,
        batch_size=4,
        cache_dir=cache_dir,
        validation_fraction=0.2,
        test_fraction=0.2,
    )
    torch.manual_seed(0)
    ar = ARLanguageModel(architecture=TINY, optimization=Optimization(lr=1e-2, warmup_steps=2))
    run = trainer(tmp_path / "ar", steps=30)
    dm = PackedTextDataModule(**data)
    run.fit(ar, datamodule=dm)
    assert run.callback_metrics["train/loss"] < 3.0, "a tiny model learns the tiny corpus"
    for path in (tmp_path / "ar" / "checkpoints" / "last.ckpt", tmp_path / "ar" / "model"):
        model, tok = load_model(path)
        torch.testing.assert_close(model.state_dict(), ar.model.state_dict())
    fake = FakeDecoder()
    conv = ConversionModule(
        init_from=str(tmp_path / "ar" / "model"),
        block_size=8,
        corruption=PositionDependent(),
        evaluation=Evaluation({"fake": fake}),
    )
    run = trainer(tmp_path / "conv", steps=3)
    dm = PackedTextDataModule(**data, tokenizer=conv.tokenizer)
    run.fit(conv, datamodule=dm)
    assert "val/ce" in run.callback_metrics and "val/acc" in run.callback_metrics
    assert conv.evaluation_report is None
    (results,) = run.test(conv, datamodule=dm, verbose=False)
    assert fake.calls == 1
    assert results["test/fake/tpf"] == pytest.approx(2.0)
    report = conv.evaluation_report  # the schema dlm-decode and dlm-eval write
    assert set(report) == {"title", "settings", "baseline", "decoders"}
    assert report["decoders"]["fake"]["tpf"] == pytest.approx(2.0)
    assert results["test/fake/ar_nll"] > 0
    assert results["test/fake/distinct4"] < 0.05  # each row repeats one token
    for r in ("0.15", "0.5", "0.9"):
        assert results[f"test/ce@{r}"] > 0 and 0 <= results[f"test/acc@{r}"] <= 1
    assert 0 < results["test/drift/attn.q"] < 1
    assert results["test/ar_loss"] > 0
    model, tok = load_model(tmp_path / "conv" / "checkpoints" / "last.ckpt")
    assert model.config.mask_token_id == 258 and tok.mask_id == 258
    predictions = run.predict(conv, datamodule=dm)
    assert predictions[0]["loss"].shape == predictions[0]["index"].shape


@pytest.mark.parametrize(
    ("make", "seq_len", "message"),
    [
        (
            lambda: ARLanguageModel(architecture=TINY),
            128,
            "seq_len 128 is longer than the model's max_seq_len 64",
        ),
        (
            lambda: ConversionModule(architecture=TINY, block_size=8),
            36,
            "seq_len 36 is not a multiple of block_size 8",
        ),
    ],
)
def test_the_data_modules_seq_len_is_checked_before_training(
    tmp_path, corpus_dir, cache_dir, make, seq_len, message
):
    dm = PackedTextDataModule(corpus=str(corpus_dir), seq_len=seq_len, batch_size=2, cache_dir=cache_dir)
    with pytest.raises(ValueError, match=message):
        trainer(tmp_path, steps=1).fit(make(), datamodule=dm)
    assert not (tmp_path / "checkpoints").exists()


def test_every_modules_checkpoint_records_how_it_trains():
    """Decoders read block size, k and shift from the record; every module writes it to its .ckpt."""
    for module, expected in (
        (ARLanguageModel(architecture=TINY), ("ARLanguageModel", None)),
        (ConversionModule(architecture=TINY, block_size=8), ("ConversionModule", 8)),
    ):
        checkpoint = {}
        module.on_save_checkpoint(checkpoint)
        record = checkpoint["dlm"]["training"]
        assert (record["module"], record["block_size"]) == expected
        assert record["token_shift"] == module.model.config.token_shift
