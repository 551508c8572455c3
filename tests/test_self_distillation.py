"""Self-distillation end to end on a tiny model: dlm-distill answers stdlib code tasks, the anchored
data module lays them out for block training, a tri-mode draft adapter trains on them, and the
result decodes as the base in AR and losslessly in self-speculation."""

import json

import lightning.pytorch as pl
import pytest
import torch

from dlm.core import ByteTokenizer, ModelConfig, Transformer, load_model, save_checkpoint
from dlm.core.adapter import DraftAdapter
from dlm.decoding import ARDecoder, SelfSpeculativeDecoder
from dlm.training import DistilledDataModule, StdlibCodeTasks, TriModeModule
from dlm.training.callbacks import ExportCheckpoint
from dlm.training.drafter.distill import distill

B = 8


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    torch.manual_seed(0)
    tok = ByteTokenizer()
    config = ModelConfig(vocab_size=tok.vocab_size, dim=32, n_layers=2, n_heads=2, max_seq_len=512)
    return save_checkpoint(Transformer(config), tok, tmp_path_factory.mktemp("base") / "model")


@pytest.fixture(scope="module")
def distilled(base, tmp_path_factory):
    out = tmp_path_factory.mktemp("distilled") / "data"
    distill(
        str(base), str(out), ARDecoder(), prompts=StdlibCodeTasks(framing="raw"),
        samples={"train": 8, "test": 4}, prefix_len=200, continuation_len=16, shard_size=8,
        batch_size=8, progress=False,
    )  # fmt: skip
    return out


def test_the_data_records_its_prompts_and_is_anchored_at_blocks(distilled):
    meta = json.loads((distilled / "meta.json").read_text())
    assert meta["prompts"]["source"] == "stdlib-code-tasks" and meta["prompts"]["framing"] == "raw"
    assert meta["skipped_long_prompts"]["train"] > 0  # some docstrings are longer than 200 bytes
    data = DistilledDataModule(str(distilled), seq_len=224, batch_size=2, block_size=B)
    sample = data.dataset("train")[0]
    scored = sample["loss_mask"].nonzero().flatten()
    first_answer = int(scored[0])
    assert first_answer % B == 1  # the last prompt token anchors a block
    assert sample["doc_ids"][first_answer - 1] == 0 and sample["doc_ids"][0] in (0, 1)
    assert torch.equal(sample["target_made"], sample["loss_mask"])


def test_bad_distilled_data_is_one_line(base, distilled, tmp_path):
    with pytest.raises(ValueError, match=r"^seq_len 220 is not a multiple of block_size 8$"):
        DistilledDataModule(str(distilled), seq_len=220, block_size=B)
    short = DistilledDataModule(str(distilled), seq_len=16, block_size=B).dataset("train")
    with pytest.raises(ValueError, match=r"leaves no room for its answer in seq_len=16; raise seq_len$"):
        short[0]
    with pytest.raises(
        ValueError, match=r"^no train prompt of the prompt source fits in prefix_len=8 tokens"
    ):
        distill(str(base), str(tmp_path / "x"), ARDecoder(), prompts=StdlibCodeTasks("raw"), prefix_len=8)
    with pytest.raises(ValueError, match=r"^the byte tokenizer has no chat template"):
        distill(str(base), str(tmp_path / "y"), ARDecoder(), prompts=StdlibCodeTasks("instruct"))


def test_adapter_trimode_on_its_own_answers_keeps_ar_and_speculates_losslessly(base, distilled, tmp_path):
    module = TriModeModule(
        init_from=str(base), block_size=B, same_document=True, adapter=DraftAdapter(rank=4), seed=0
    )
    data = DistilledDataModule(str(distilled), seq_len=224, batch_size=2, block_size=B)
    trainer = pl.Trainer(
        max_steps=3, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, limit_val_batches=0, default_root_dir=tmp_path,
        callbacks=[ExportCheckpoint(str(tmp_path / "model"))],
    )  # fmt: skip
    trainer.fit(module, datamodule=data)
    trained, _ = load_model(tmp_path / "model")
    original, _ = load_model(base)
    prompts = [list(b"def add(a, b):\n    "), list(b"import os\n")]
    want, _ = ARDecoder().generate(original, prompts, 12)
    assert ARDecoder().generate(trained, prompts, 12)[0] == want
    assert (
        SelfSpeculativeDecoder().generate(trained.double(), prompts, 12)[0]
        == ARDecoder().generate(original.double(), prompts, 12)[0]
    )


def test_data_from_another_teacher_is_refused(distilled, tmp_path):
    torch.manual_seed(1)
    tok = ByteTokenizer()
    config = ModelConfig(vocab_size=tok.vocab_size, dim=32, n_layers=2, n_heads=2, max_seq_len=512)
    other = save_checkpoint(Transformer(config), tok, tmp_path / "other")
    module = TriModeModule(init_from=str(other), block_size=B, same_document=True)
    data = DistilledDataModule(str(distilled), seq_len=224, batch_size=2, block_size=B)
    trainer = pl.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False)
    with pytest.raises(ValueError, match=r"was made by the target .*; distill again with this teacher$"):
        trainer.fit(module, datamodule=data)


def test_conversion_trains_on_the_same_data(base, distilled, tmp_path):
    from dlm.training import ConversionModule

    module = ConversionModule(init_from=str(base), block_size=B, same_document=True)
    data = DistilledDataModule(str(distilled), seq_len=224, batch_size=2, block_size=B)
    trainer = pl.Trainer(
        max_steps=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, limit_val_batches=0, default_root_dir=tmp_path,
    )  # fmt: skip
    trainer.fit(module, datamodule=data)
    assert torch.isfinite(trainer.callback_metrics["train/loss"])


def test_conversion_and_ar_score_the_answers_of_distilled_data(base, distilled, tmp_path):
    """The AR CE a conversion test reports, and an AR module's loss, count the answer tokens only:
    not the prompt, the padding, nor the tokens across the padding's document boundaries."""
    from dlm.core.losses import AutoregressiveLoss
    from dlm.training import ARLanguageModel, ConversionModule
    from dlm.training.patterns import causal, positions

    data = DistilledDataModule(str(distilled), seq_len=224, batch_size=4, block_size=B)
    batch = next(iter(data.test_dataloader()))
    tokens = batch["tokens"]
    module = ConversionModule(init_from=str(base), block_size=B, same_document=True).eval()
    with torch.no_grad():
        logits = module.model(tokens, positions(*tokens.shape, tokens.device), causal(batch["doc_ids"]))
    answers = AutoregressiveLoss()(logits, tokens, batch["loss_mask"])
    everything = AutoregressiveLoss()(logits, tokens)
    assert abs(float(answers - everything)) > 0.1  # the layouts differ enough to tell them apart
    trainer = pl.Trainer(
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        limit_test_batches=1, default_root_dir=tmp_path,
    )  # fmt: skip
    trainer.test(module, datamodule=data, verbose=False)
    assert float(trainer.callback_metrics["test/ar_loss"]) == pytest.approx(float(answers), rel=1e-3)

    ar = ARLanguageModel(init_from=str(base), same_document=True).eval()
    with torch.no_grad():
        assert float(ar.step(batch)) == pytest.approx(float(answers), rel=1e-3)


def test_an_empty_answer_set_is_one_line(distilled, tmp_path):
    import shutil

    from dlm.training.drafter.distill import write_shard

    empty = tmp_path / "empty"
    shutil.copytree(distilled, empty)
    shutil.rmtree(empty / "train")
    write_shard([{"index": 0, "prefix": [1, 2, 3], "continuation": []}] * 8, empty / "train" / "shard-00000")
    with pytest.raises(ValueError, match=r"empty: every train answer is empty; nothing to train on$"):
        DistilledDataModule(str(empty), seq_len=224, block_size=B).dataset("train")


def test_the_test_prompts_of_distilled_data_are_the_tasks_as_asked(base, distilled):
    """A module's test decodes each held-out task's whole prompt, without padding or answer."""
    from dlm.decoding import ARDecoder, Evaluation

    evaluation = Evaluation({"ar": ARDecoder()}, prompts=3, prompt_tokens=8, max_new_tokens=4)
    module = TriModeModule(init_from=str(base), block_size=B, same_document=True, evaluation=evaluation)
    data = DistilledDataModule(str(distilled), seq_len=224, batch_size=2, block_size=B)
    rows = data.dataset("test").rows
    for batch in data.test_dataloader():
        module.collect_prompts(batch)
    assert module.prompts == [rows[i]["prefix"] for i in range(3)]
