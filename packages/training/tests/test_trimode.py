import lightning.pytorch as pl
import pytest
import torch
from fake_decoder import FakeDecoder
from tokenizers import Tokenizer, models

from dlm.attention import Causal, TriMode
from dlm.core import ByteTokenizer, DecodeStats, HFTokenizer, ModelConfig, Transformer, save_checkpoint
from dlm.core.losses import HybridLoss
from dlm.core.masking import Uniform
from dlm.decoding import SelfSpeculativeDecoder
from dlm.decoding.evaluation import Evaluation
from dlm.training import Architecture, PackedTextDataModule, TriModeModule

TINY = Architecture(dim=32, n_layers=2, n_heads=2, max_seq_len=64)


def batch(n=2, length=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {
        "tokens": torch.randint(0, 256, (n, length), generator=g),
        "doc_ids": torch.zeros(n, length, dtype=torch.long),
        "index": torch.arange(n) + 5,
    }


def test_objective_is_one_trimode_forward_and_the_hybrid_loss():
    torch.manual_seed(0)
    loss = HybridLoss(diffusion_weight=0.5, ar_weight=2.0)
    module = TriModeModule(architecture=TINY, block_size=8, corruption=Uniform(), loss=loss, seed=3)
    b = batch()
    out = module.objective(b, epoch=2)
    ref = Uniform()(b["tokens"], b["index"], 2, 8, 258, 3)
    pos = torch.arange(32).repeat(2).expand(2, -1)
    logits = module.model(torch.cat([ref.tokens, b["tokens"]], 1), pos, TriMode(8, 32))
    diffusion, ar = loss.terms(logits, b["tokens"], ref.mask, ref.weights, 8, token_shift=False)
    torch.testing.assert_close(out["diffusion"], diffusion)
    torch.testing.assert_close(out["ar_ce"], ar)
    torch.testing.assert_close(out["loss"], 0.5 * diffusion + 2.0 * ar)
    assert out["ce"].shape == out["correct"].shape == (int(ref.mask.sum()),)
    assert ((out["ratio"] > 0) & (out["ratio"] <= 1)).all()


def test_the_clean_half_is_the_ar_model_and_never_sees_the_noisy_half():
    torch.manual_seed(0)
    module = TriModeModule(architecture=TINY, block_size=8).eval()
    b = batch(1)
    noisy = b["tokens"].masked_fill(torch.rand(1, 32) < 0.5, 258)
    both = module(noisy, b["tokens"])
    causal = module.model(b["tokens"], torch.arange(32).unsqueeze(0), Causal())
    torch.testing.assert_close(both[:, 32:], causal, atol=1e-5, rtol=1e-5)
    other = module(torch.full_like(noisy, 258), b["tokens"])
    torch.testing.assert_close(other[:, 32:], both[:, 32:])
    # A noisy block sees the clean blocks before it only: changing block 2 on leaves blocks 0-1 as they are.
    later = b["tokens"].clone()
    later[:, 16:] = (later[:, 16:] + 1) % 256
    noisy_later = noisy.clone()
    noisy_later[:, 16:] = later[:, 16:]
    torch.testing.assert_close(module(noisy_later, later)[:, :16], both[:, :16])


def test_no_token_shift_by_default_and_a_config_may_choose_shift():
    assert TriModeModule(architecture=TINY).model.config.token_shift is False
    assert TriModeModule().model.config.token_shift is False
    shifted = Architecture(dim=32, n_layers=1, n_heads=2, max_seq_len=64, token_shift=True)
    assert TriModeModule(architecture=shifted).model.config.token_shift is True


def test_test_stage_logs_every_mode_prints_the_table_and_plots(tmp_path, corpus_dir, cache_dir, capsys):
    plotted = []
    decoders = {"ar": FakeDecoder(), "spec": FakeDecoder(2, speculative=True, k=7)}
    module = TriModeModule(
        architecture=TINY,
        block_size=8,
        evaluation=Evaluation(
            decoders,
            prompts=3,
            prompt_tokens=8,
            max_new_tokens=6,
            batch_size=2,
            baseline="ar",
            plot=lambda results, path: plotted.append(([n for n, _ in results], path)),
        ),
    )
    dm = PackedTextDataModule(
        str(corpus_dir),
        seq_len=32,
        batch_size=4,
        cache_dir=cache_dir,
        validation_fraction=0.2,
        test_fraction=0.2,
    )
    trainer = pl.Trainer(
        max_steps=2,
        val_check_interval=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=1,
        limit_test_batches=1,
        default_root_dir=tmp_path,
    )
    trainer.fit(module, datamodule=dm)
    for name in (
        "train/loss",
        "train/diffusion",
        "train/ar_ce",
        "train/masked_acc",
        "val/masked_ce",
        "val/ar_ce",
    ):
        assert name in trainer.callback_metrics, name
    (results,) = trainer.test(module, datamodule=dm, verbose=False)
    assert results["test/spec/tpf"] == 2.0 and results["test/spec/speedup"] == pytest.approx(2.0)
    assert results["test/spec/agreement"] == 1.0 and results["test/ar/ar_nll"] > 0
    assert 0 <= results["test/masked_acc"] <= 1 and results["test/ar_ce"] > 0
    assert plotted == [(["spec"], str(tmp_path / "acceptance.png"))]
    out = capsys.readouterr().out
    assert "| spec | 2.00 | 2.00 |" in out and "acceptance-by-position plot:" in out
    assert "| spec | 2.00 | 2.00 |" in (tmp_path / "decoding.md").read_text()


def hf_without_mask(tmp_path):
    vocab = {f"t{i}": i for i in range(30)} | {"<eos>": 30}
    tok = HFTokenizer(Tokenizer(models.WordLevel(vocab, unk_token="t0")), eos_id=30)
    from dlm.core import to_hf

    model = Transformer(ModelConfig(vocab_size=31, dim=32, n_layers=1, n_heads=2, max_seq_len=64))
    return to_hf(model, tok, tmp_path / "hf")


class NeedsMask:
    """A decoder that, like the diffusion decoders, refuses a model without a mask token."""

    needs_drafter = False

    def check(self, model):
        if model.config.mask_token_id is None:
            raise ValueError("NeedsMask needs a model with a mask token")

    def bind_drafter(self, drafter):
        raise ValueError("NeedsMask drafts with its model")

    def generate(self, model, prompts, max_new_tokens):
        self.check(model)
        return [[] for _ in prompts], DecodeStats()


def test_bad_input_is_a_clear_error(tmp_path):
    torch.manual_seed(0)
    ar = Transformer(ModelConfig(vocab_size=260, dim=32, n_layers=1, n_heads=2, max_seq_len=64))
    directory = str(save_checkpoint(ar, ByteTokenizer(), tmp_path / "ar"))
    with pytest.raises(ValueError, match="seq_len 60 is not a multiple of block_size 8"):
        TriModeModule(init_from=directory, block_size=8, seq_len=60)
    with pytest.raises(
        ValueError, match="the checkpoint has dim=32 but the config sets architecture.dim=128"
    ):
        TriModeModule(init_from=directory, architecture=Architecture(dim=128, n_layers=1))
    with pytest.raises(
        ValueError, match="the checkpoint has n_layers=1 but the config sets architecture.n_layers=4"
    ):
        TriModeModule(init_from=directory, architecture=Architecture(dim=32, n_layers=4))
    with pytest.raises(
        ValueError,
        match=r"tokenizer of .*hf has no mask token and add_mask_token is false; tri-mode training and "
        r"the diffusion decoders \['spec'\] need one",
    ):
        TriModeModule(
            init_from=str(hf_without_mask(tmp_path)),
            add_mask_token=False,
            evaluation=Evaluation({"spec": NeedsMask()}),
        )
    with pytest.raises(ValueError, match="baseline decoder 'ar' is not among the decoders \\['spec'\\]"):
        TriModeModule(init_from=directory, evaluation=Evaluation({"spec": NeedsMask()}, baseline="ar"))
    with pytest.raises(ValueError, match="block_size must be an integer >= 2"):
        TriModeModule(init_from=directory, block_size=1)


def test_decoders_are_checked_before_training_and_mismatched_blocks_warn(tmp_path):
    class Refuses:
        needs_drafter = False

        def check(self, model):
            raise ValueError("cross_block=True needs a token-shift model")

    with pytest.raises(ValueError, match="decoder 'spec' \\(Refuses\\) cannot run: cross_block=True needs"):
        TriModeModule(architecture=TINY, evaluation=Evaluation({"spec": Refuses()}))
    with pytest.warns(UserWarning, match="decoder 'spec' drafts 3 masks per block but training blocks hold"):
        TriModeModule(
            architecture=TINY, block_size=8, evaluation=Evaluation({"spec": SelfSpeculativeDecoder(k=3)})
        )
