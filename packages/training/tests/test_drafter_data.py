"""dlm-distill (greedy continuations, resumable shards, the target's identity) and DistilledDataModule."""

import json

import lightning.pytorch as pl
import pytest
import torch

from dlm.attention import Causal
from dlm.core import ByteTokenizer, ModelConfig, Transformer, load_model, save_checkpoint
from dlm.core.fingerprint import model_fingerprint
from dlm.training import Architecture, DistilledDataModule, DrafterModule
from dlm.training.drafter.data import DistilledDataset
from dlm.training.drafter.distill import distill, main


class SlowGreedy:
    """A cache-free greedy decoder (the obvious reference), stopping a row at `eos_id`; it can be
    told to fail after some calls, to simulate an interrupted run."""

    def __init__(self, eos_id=None, fail_after=None):
        self.eos_id, self.fail_after, self.calls = eos_id, fail_after, 0

    def generate(self, model, prompts, max_new_tokens):
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise RuntimeError("interrupted")
        self.calls += 1
        out = []
        for prompt in prompts:
            seq = list(prompt)
            for _ in range(max_new_tokens):
                logits = model(torch.tensor([seq]), torch.arange(len(seq))[None], Causal())
                seq.append(int(logits[0, -1].argmax()))
                if seq[-1] == self.eos_id:
                    break
            out.append(seq[len(prompt) :])
        return out, None


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models run much faster on one thread when other jobs share the cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """The target, a small local corpus and its token cache, shared by the module's tests."""
    root = tmp_path_factory.mktemp("distill")
    torch.manual_seed(0)
    model = Transformer(ModelConfig(vocab_size=260, dim=32, n_layers=1, n_heads=2, max_seq_len=64))
    save_checkpoint(model, ByteTokenizer(), root / "target")
    lines = [json.dumps({"id": f"d{i}", "text": f"doc {i}: " + "abc " * 30}) for i in range(30)]
    (root / "docs.jsonl").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="module")
def target(workdir):
    return str(workdir / "target")


def run(workdir, out, decoder, **kw):
    settings = dict(
        samples={"train": 6, "test": 2}, prefix_len=9, continuation_len=7, shard_size=4, batch_size=2
    )
    settings.update(kw)
    return distill(
        str(workdir / "target"), str(out), decoder, corpus=str(workdir / "docs.jsonl"),
        cache_dir=str(workdir / "cache"), progress=False, **settings,
    )  # fmt: skip


@pytest.fixture(scope="module")
def distilled(workdir):
    return run(workdir, workdir / "distilled", SlowGreedy())


def test_distillation_writes_greedy_continuations_and_the_targets_identity(target, distilled):
    meta = json.loads((distilled / "meta.json").read_text())
    model = load_model(target)[0]
    assert meta["target"] == {"path": target, "fingerprint": model_fingerprint(model)}
    assert sorted(p.name for p in (distilled / "train").iterdir()) == ["shard-00000", "shard-00001"]
    rows = (
        DistilledDataModule(str(distilled), tokenizer=ByteTokenizer(), vocab_size=260).dataset("train").rows
    )
    assert len(rows) == 6 and len(rows[0]["prefix"]) == 9
    assert rows[0]["continuation"] == SlowGreedy().generate(model, [rows[0]["prefix"]], 7)[0][0]


def test_a_rerun_resumes_at_the_first_missing_shard(workdir, tmp_path):
    out = tmp_path / "d"
    with pytest.raises(RuntimeError, match="interrupted"):
        run(workdir, out, SlowGreedy(fail_after=2))  # shard 0 takes 2 calls, then it dies in shard 1
    assert [p.name for p in (out / "train").iterdir()] == ["shard-00000"]
    again = SlowGreedy()
    run(workdir, out, again)
    assert again.calls == 2  # train shard 1 and the test shard, not shard 0 again
    assert len(DistilledDataModule(str(out)).dataset("train")) == 6


def test_workers_share_the_shards(workdir, tmp_path):
    out = tmp_path / "d"
    run(workdir, out, SlowGreedy(), worker=1, workers=2)
    assert [p.name for p in (out / "train").iterdir()] == ["shard-00001"]
    assert not (out / "test").exists()
    run(workdir, out, SlowGreedy(), worker=0, workers=2)
    assert len(DistilledDataModule(str(out)).dataset("train")) == 6
    with pytest.raises(ValueError, match="worker must be in \\[0, workers\\), got worker=2, workers=2"):
        run(workdir, out, SlowGreedy(), worker=2, workers=2)


def test_a_rerun_with_other_settings_is_refused(workdir, distilled):
    with pytest.raises(
        ValueError, match="holds a distillation with continuation_len=7, this run has continuation_len=5"
    ):
        run(workdir, distilled, SlowGreedy(), continuation_len=5)


def test_samples_are_windows_of_prefix_and_continuation(distilled):
    eos, pad = ByteTokenizer().eos_id, ByteTokenizer().pad_id
    dataset = DistilledDataModule(str(distilled), seq_len=12, tokenizer=ByteTokenizer()).dataset("train")
    row, sample = dataset.rows[1], dataset[1]
    assert sample["tokens"].tolist() == (row["prefix"] + row["continuation"])[-12:]
    assert sample["target_made"].tolist() == [False] * 5 + [True] * 7
    short = DistilledDataset([{"prefix": [1] * 9, "continuation": [2, eos]}], 12, pad)[0]
    assert short["tokens"].tolist() == [1] * 9 + [2, eos, pad]
    assert short["target_made"].tolist() == [False] * 9 + [True, True, False]
    assert DistilledDataModule(str(distilled)).seq_len == 16


def test_data_from_another_target_is_refused(distilled, target, tmp_path):
    torch.manual_seed(1)
    other = Transformer(ModelConfig(vocab_size=260, dim=32, n_layers=1, n_heads=2, max_seq_len=64))
    other_path = str(save_checkpoint(other, ByteTokenizer(), tmp_path / "other"))
    module = DrafterModule(
        target=other_path,
        architecture=Architecture(dim=32, n_layers=1, n_heads=2, max_seq_len=64),
        block_size=4,
    )
    trainer = pl.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False)
    with pytest.raises(
        ValueError, match=f"made by the target {target} .* but this module's teacher is {other_path}"
    ):
        trainer.fit(module, datamodule=DistilledDataModule(str(distilled)))


class HFLike:
    pad_id = 0

    def to_spec(self):
        return {"kind": "hf"}


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(seq_len=17), "seq_len must be a positive integer <= prefix_len \\+ continuation_len = 16"),
        (dict(tokenizer=HFLike()), "tokenised with a byte tokenizer, the model has a hf one"),
        (dict(vocab_size=100), "holds token id .* outside the model's vocabulary of 100"),
    ],
)
def test_bad_data_settings_are_clear_errors(distilled, kwargs, message):
    with pytest.raises(ValueError, match=message):
        DistilledDataModule(str(distilled), **kwargs).dataset("train")


def test_missing_data_is_a_clear_error(distilled, tmp_path):
    with pytest.raises(ValueError, match="has no finished 'validation' shards"):
        DistilledDataModule(str(distilled)).dataset("validation")
    with pytest.raises(FileNotFoundError, match="is not a dlm-distill output directory"):
        DistilledDataModule(str(tmp_path / "nothing"))


def test_the_command_line_reports_bad_input_in_one_line(target, tmp_path):
    pytest.importorskip("dlm.decoding", reason="the command line names its decoder by class_path")
    args = ["--target", target, "--out", str(tmp_path / "d"), "--decoder", "dlm.decoding.ARDecoder"]
    (tmp_path / "a-file").write_text("")
    (tmp_path / "latin1.txt").write_bytes("caf\u00e9 au lait\n".encode("latin-1"))
    cases = [
        (["--prefix_len", "0"], "ValueError: prefix_len must be a positive integer, got 0"),
        (["--device", "nonsense"], "ValueError: device 'nonsense' cannot be used here (Expected one of"),
        (["--prefix_len", "40", "--continuation_len", "40"],
         "ValueError: prefix_len 40 + continuation_len 40 exceed the target's max_seq_len 64"),
        (["--out", str(tmp_path / "a-file/d"), "--prefix_len", "8", "--continuation_len", "8"], f"ValueError: cannot write the output directory {tmp_path}/a-file/d"),
        (["--corpus", str(tmp_path / "latin1.txt"), "--prefix_len", "8", "--continuation_len", "8"],
         f"ValueError: corpus '{tmp_path}/latin1.txt' holds a file that is not UTF-8 text (invalid continuation byte"),
    ]  # fmt: skip
    for extra, message in cases:
        with pytest.raises(SystemExit) as exit_info:
            main([*args, *extra])
        assert exit_info.value.code.startswith(f"dlm-distill: error: {message}"), exit_info.value.code
