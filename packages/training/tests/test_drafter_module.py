"""DrafterModule: the training layout equals the decode-time draft, labels come from the target,
and bad pairs or settings are clear errors."""

import json

import lightning.pytorch as pl
import pytest
import torch
from torch.utils.data import DataLoader

from dlm.attention import Causal, Draft
from dlm.core import ByteTokenizer, DecodeStats, ModelConfig, Transformer, save_checkpoint
from dlm.core.checkpoint import TrainingRecord, training_of
from dlm.core.losses import ChainLoss, DrafterLossMix, ForwardKL, UniformCE
from dlm.decoding import DrafterSpeculativeDecoder
from dlm.decoding.evaluation import Evaluation
from dlm.training import Architecture, DrafterModule
from dlm.training.callbacks import ExportCheckpoint
from dlm.training.drafter.accuracy import DraftAccuracy
from dlm.training.drafter.blocks import draft_blocks, drafter_logits

TINY = Architecture(dim=32, n_layers=2, n_heads=2, max_seq_len=64)


def save_target(directory, vocab_size=260, seed=0):
    torch.manual_seed(seed)
    model = Transformer(ModelConfig(vocab_size=vocab_size, dim=32, n_layers=1, n_heads=2, max_seq_len=64))
    return str(save_checkpoint(model, ByteTokenizer(), directory))


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models run much faster on one thread when other jobs share the cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def target(tmp_path_factory):
    return save_target(tmp_path_factory.mktemp("target") / "model")


def batch(n=2, length=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {
        "tokens": torch.randint(0, 256, (n, length), generator=g),
        "doc_ids": torch.zeros(n, length, dtype=torch.long),
        "index": torch.arange(n),
    }


def test_blocks_are_those_whose_k_labels_all_exist():
    valid = torch.zeros(2, 16, dtype=torch.bool)
    valid[0, 1:] = True  # teacher forcing: every position but the first
    valid[1, 6:13] = True  # a continuation from 6 to 12
    blocks = draft_blocks(valid, block_size=4, k=3)
    # row 0: anchors 0, 4, 8, 12 (12 + 3 = 15 < 16); row 1: labels 5..7 missing 5, anchor 8 -> 9..11 ok
    assert blocks.rows.tolist() == [0, 0, 0, 0, 1]
    assert blocks.anchors.tolist() == [0, 4, 8, 12, 8]
    assert blocks.label_positions[-1].tolist() == [9, 10, 11]
    assert blocks.drafter_positions(True)[-1].tolist() == [8, 9, 10]
    assert blocks.drafter_positions(False)[-1].tolist() == [9, 10, 11]
    valid[1, 0] = True  # position 0 is never a label, so whether it is valid changes nothing
    again = draft_blocks(valid, block_size=4, k=3)
    assert again.rows.tolist() == blocks.rows.tolist() and again.anchors.tolist() == blocks.anchors.tolist()


@pytest.mark.parametrize("shift", [True, False], ids=["shift", "noshift"])
def test_training_blocks_see_what_a_cached_draft_sees(shift):
    """Each block's logits equal a decode-time draft: the causal prefix before the anchor in the
    cache, then [t, MASK x (B-1)] with the Draft mask, as DrafterSpeculativeDecoder runs it."""
    torch.manual_seed(0)
    config = ModelConfig(
        vocab_size=40, dim=32, n_layers=2, n_heads=4, n_kv_heads=2, max_seq_len=64, mask_token_id=39,
        token_shift=shift, init_std=0.3,
    )  # fmt: skip
    model = Transformer(config).double().eval()
    B, L = 4, 16
    tokens = torch.randint(0, 39, (1, L))
    blocks = draft_blocks(torch.ones(1, L, dtype=torch.bool), B, B - 1)
    trained = drafter_logits(model, tokens, blocks, B)
    for n, anchor in enumerate(blocks.anchors.tolist()):
        cache = model.new_cache(1, L + B)
        if anchor:
            model.hidden(tokens[:, :anchor], torch.arange(anchor)[None], Causal(), cache=cache)
        block = torch.tensor([[tokens[0, anchor].item()] + [39] * (B - 1)])
        logits = model(
            block, torch.arange(anchor, anchor + B)[None], Draft((anchor,), B), cache, commit=False
        )
        decoded = logits[0, :-1] if shift else logits[0, 1:]  # dlm.decoding's block_predictions
        torch.testing.assert_close(trained[n], decoded, rtol=1e-9, atol=1e-9)


def test_teacher_forced_labels_are_the_targets_argmax_before_each_position(target):
    module = DrafterModule(target=target, architecture=TINY, block_size=4, loss=ForwardKL())
    b = batch()
    logits, labels, teacher = module.draft(b)
    ref = module.target.model(b["tokens"], torch.arange(32).expand(2, -1), Causal())
    blocks = draft_blocks(torch.ones(2, 32, dtype=torch.bool), 4, 3)
    expected = ref[blocks.rows[:, None], blocks.label_positions - 1]
    torch.testing.assert_close(teacher, expected)
    assert torch.equal(labels, expected.argmax(-1))
    assert logits.shape == (16, 3, 260)


def test_distilled_labels_are_the_tokens_the_target_made(target):
    module = DrafterModule(target=target, architecture=TINY, block_size=4, k=2)
    b = batch(length=16)
    b["target_made"] = torch.zeros(2, 16, dtype=torch.bool)
    b["target_made"][:, 4:] = True
    logits, labels, teacher = module.draft(b)
    assert teacher is None  # UniformCE needs no target forward on distilled data
    assert labels.tolist() == [b["tokens"][r, a + 1 : a + 3].tolist() for r in (0, 1) for a in (4, 8, 12)]
    assert logits.shape == (6, 2, 260)


def test_objective_is_the_loss_of_the_drafted_blocks(target):
    torch.manual_seed(0)
    loss = DrafterLossMix([UniformCE(), ChainLoss()], [1.0, 0.5])
    module = DrafterModule(target=target, architecture=TINY, block_size=8, loss=loss)
    b = batch()
    total, parts, logits, labels = module.objective(b)
    torch.testing.assert_close(total, UniformCE()(logits, labels) + 0.5 * ChainLoss()(logits, labels))
    assert set(parts) == {"uniform_ce", "chain"}
    total.backward()
    assert module.model.embed.weight.grad is not None
    assert all(p.grad is None for p in module.target.model.parameters())
    assert not any(name.startswith("target") for name in module.state_dict())


def test_draft_accuracy_counts_leading_right_drafts():
    metric = DraftAccuracy(3)
    logits = torch.nn.functional.one_hot(torch.tensor([[1, 2, 3], [1, 0, 3]]), 5).float()
    metric.update(logits, torch.tensor([[1, 2, 0], [1, 2, 3]]))
    out = metric.compute()
    assert out["tau"].item() == pytest.approx(1 + (2 + 1) / 2)
    assert [out[f"acc@{k}"].item() for k in (1, 2, 3)] == [1.0, 0.5, 0.5]
    assert [out[f"accept@{k}"].item() for k in (1, 2, 3)] == [1.0, 0.5, 0.0]


class RecordingDecoder:
    """Stands in for DrafterSpeculativeDecoder: records the drafter it is given and accepts 2 of 3 drafts."""

    needs_drafter = True

    def __init__(self):
        self.drafter, self.batches = None, []

    def check(self, model):
        pass

    def bind_drafter(self, drafter):
        self.drafter = drafter

    def generate(self, model, prompts, max_new_tokens):
        self.batches.append(len(prompts))
        stats = DecodeStats()
        stats.count("target", len(prompts))
        for _ in prompts:
            stats.record_verify(3, 3, 2)
        stats.tokens = 3 * len(prompts)
        return [[1, 2, 3] for _ in prompts], stats


class Batches(pl.LightningDataModule):
    def __init__(self, n=4):
        super().__init__()
        self.batches = [batch(seed=i) for i in range(n)]

    def train_dataloader(self):
        return DataLoader(self.batches, batch_size=None)

    def test_dataloader(self):
        return DataLoader(self.batches, batch_size=None)


def test_fit_and_test_log_speculation_and_write_the_plot(target, tmp_path):
    decoder = RecordingDecoder()
    module = DrafterModule(
        target=target,
        architecture=TINY,
        block_size=4,
        loss=UniformCE(),
        evaluation=Evaluation({"stub": decoder}, prompts=3, batch_size=2, plot=True, report="drafter_eval"),
    )
    trainer = pl.Trainer(
        max_steps=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        default_root_dir=tmp_path, enable_model_summary=False,
        callbacks=[ExportCheckpoint(str(tmp_path / "model"))],
    )  # fmt: skip
    trainer.fit(module, datamodule=Batches())
    record = json.loads((tmp_path / "model/dlm.json").read_text())["training"]
    assert record == {
        "module": "DrafterModule",
        "block_size": 4,
        "k": 3,
        "token_shift": True,
        "clean": "causal",
    }
    (metrics,) = trainer.test(module, datamodule=Batches(), verbose=False)
    assert decoder.drafter is module.model
    assert decoder.batches == [2, 1]  # 3 prompts in batches of 2
    assert metrics["test/stub/tau"] == pytest.approx(3.0)
    assert metrics["test/stub/accept@2"] == 1.0 and metrics["test/stub/accept@3"] == 0.0
    assert metrics["test/stub/reach@1"] == 1.0
    assert 0 <= metrics["test/draft/accept@1"] <= 1
    report = json.loads((tmp_path / "drafter_eval.json").read_text())
    assert (
        report["decoders"]["stub"]["tau"]
        == pytest.approx(3.0)
        == module.evaluation_report["decoders"]["stub"]["tau"]
    )
    assert (tmp_path / "acceptance.png").stat().st_size > 0


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(block_size=4, k=4), ValueError, "k=4 draft positions do not fit the drafter's block size 4"),
        (dict(block_size=1), ValueError, "block_size must be an integer >= 2"),
        (dict(block_size=4, seq_len=30), ValueError, "seq_len 30 is not a multiple of block_size 4"),
        (dict(target="missing/target"), FileNotFoundError, "target: missing/target does not exist"),
        (
            dict(block_size=4, evaluation=Evaluation({"greedy": DrafterSpeculativeDecoder(k=7)})),
            ValueError,
            "decoder 'greedy' drafts k=7 tokens, more than the drafter's block size 4 holds",
        ),
    ],
)
def test_bad_settings_are_clear_errors(target, kwargs, error, message):
    kwargs = {"target": target, "architecture": TINY, **kwargs}
    with pytest.raises(error, match=message):
        DrafterModule(**kwargs)


def test_the_checkpoint_and_the_model_record_how_the_drafter_was_trained(target):
    module = DrafterModule(target=target, architecture=TINY, block_size=8, k=5)
    checkpoint = {}
    module.on_save_checkpoint(checkpoint)
    expected = TrainingRecord("DrafterModule", block_size=8, k=5, token_shift=True, clean="causal")
    assert checkpoint["dlm"]["training"] == expected.to_dict()
    assert training_of(module.model) == expected  # what a decoder given this drafter reads


def speculative(name, k, cross_block=False):
    return Evaluation({name: DrafterSpeculativeDecoder(k=k, cross_block=cross_block)})


def test_a_cross_block_decoder_is_refused_and_other_draft_blocks_warned(target):
    with pytest.raises(ValueError, match="decoder 'x' sets cross_block=True, but DrafterModule never trains"):
        DrafterModule(target=target, architecture=TINY, block_size=4, evaluation=speculative("x", 3, True))
    with pytest.warns(
        UserWarning, match=r"drafts \[t, MASK x 2\] but training shows the drafter \[anchor, MASK x 3\]"
    ):
        DrafterModule(target=target, architecture=TINY, block_size=4, evaluation=speculative("short", 2))
    with pytest.warns(UserWarning, match="the loss scores only the first 2 drafts"):
        DrafterModule(target=target, architecture=TINY, block_size=4, k=2, evaluation=speculative("long", 3))


def test_a_drafter_with_another_vocabulary_is_refused(tmp_path):
    other = save_target(tmp_path / "other", vocab_size=300)
    with pytest.raises(
        ValueError, match=r"the drafter's vocabulary \(260 tokens\) differs from the target's \(300"
    ):
        DrafterModule(target=other, architecture=TINY)
