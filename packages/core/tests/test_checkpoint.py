import json

import pytest
import torch

from dlm.attention import Causal
from dlm.core import ByteTokenizer, ModelConfig, Transformer, load_checkpoint, load_model, save_checkpoint
from dlm.core.checkpoint import TrainingRecord, checkpoint_record, training_of


def tiny(tie=True) -> Transformer:
    torch.manual_seed(0)
    return Transformer(
        ModelConfig(vocab_size=260, dim=32, n_layers=2, n_heads=4, tie_embeddings=tie, mask_token_id=258)
    )


def logits(model):
    tokens = torch.arange(10).unsqueeze(0)
    return model(tokens, torch.arange(10).unsqueeze(0), Causal())


@pytest.mark.parametrize("tie", [True, False])
def test_round_trip_is_exact(tmp_path, tie):
    model = tiny(tie)
    save_checkpoint(model, ByteTokenizer(), tmp_path / "ckpt")
    loaded, tok = load_checkpoint(tmp_path / "ckpt")
    assert loaded.config == model.config
    assert isinstance(tok, ByteTokenizer)
    assert torch.equal(logits(loaded), logits(model))
    assert (loaded.lm_head.weight is loaded.embed.weight) == tie


def test_failed_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    model = tiny()
    save_checkpoint(model, ByteTokenizer(), tmp_path / "ckpt")
    import dlm.core.checkpoint as ckpt

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(ckpt, "save_file", boom)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(model, ByteTokenizer(), tmp_path / "ckpt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]
    load_checkpoint(tmp_path / "ckpt")


def test_load_model_reads_a_lightning_style_checkpoint(tmp_path):
    model = tiny()
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    torch.save({"state_dict": state, "dlm": checkpoint_record(model, ByteTokenizer())}, tmp_path / "x.ckpt")
    loaded, _ = load_model(tmp_path / "x.ckpt")
    assert torch.equal(logits(loaded), logits(model))


def test_bad_checkpoints_are_named(tmp_path):
    torch.save({"state_dict": {}}, tmp_path / "plain.ckpt")
    with pytest.raises(ValueError, match="without a 'dlm' record"):
        load_model(tmp_path / "plain.ckpt")
    with pytest.raises(FileNotFoundError, match="expected a dlm checkpoint directory"):
        load_model(tmp_path)
    save_checkpoint(tiny(), ByteTokenizer(), tmp_path / "ckpt")
    (tmp_path / "ckpt" / "model.safetensors").write_bytes(b"not a tensor file")
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        load_model(tmp_path / "ckpt")
    (tmp_path / "notes.ckpt").write_text("hello")
    with pytest.raises(
        ValueError, match=r"notes.ckpt: not a readable checkpoint \(not a torch.save zip archive\)"
    ):
        load_model(tmp_path / "notes.ckpt")
    torch.save({"dlm": {}}, tmp_path / "no-weights.ckpt")
    with pytest.raises(ValueError, match="no-weights.ckpt: a checkpoint without a 'state_dict'"):
        load_model(tmp_path / "no-weights.ckpt")
    record = tmp_path / "ckpt" / "dlm.json"
    for text, message in [
        ("{not json", "dlm.json: not valid JSON \\(Expecting property name"),
        ('{"format": "dlm", "tokenizer": {"kind": "byte"}}', "dlm.json: not a dlm checkpoint record"),
        ("[1, 2]", "dlm.json: not a dlm checkpoint record"),
    ]:
        record.write_text(text)
        with pytest.raises(ValueError, match=message):
            load_model(tmp_path / "ckpt")


def test_shape_mismatch_names_the_tensor(tmp_path):
    model = tiny()
    save_checkpoint(model, ByteTokenizer(), tmp_path / "ckpt")
    record = json.loads((tmp_path / "ckpt" / "dlm.json").read_text())
    record["model"]["dim"] = 64
    (tmp_path / "ckpt" / "dlm.json").write_text(json.dumps(record))
    with pytest.raises(
        ValueError, match="weight 'embed.weight' has shape \\(260, 32\\), the config needs \\(260, 64\\)"
    ):
        load_model(tmp_path / "ckpt")


class Payload:
    """Pickles as a call of os.system: what a hostile checkpoint would run while loading."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_a_checkpoint_with_a_pickled_payload_is_refused_before_it_runs(tmp_path):
    model, marker = tiny(), tmp_path / "payload-ran"
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    record = checkpoint_record(model, ByteTokenizer())
    torch.save({"state_dict": state, "dlm": record, "hyper_parameters": Payload(marker)}, tmp_path / "x.ckpt")
    with pytest.raises(
        ValueError, match=r"x.ckpt: refused to load: it holds a pickled posix.system, "
    ) as err:
        load_model(tmp_path / "x.ckpt")
    assert "\n" not in str(err.value)
    assert not marker.exists()


def test_the_training_record_round_trips_through_both_formats(tmp_path):
    model, trained = tiny(), TrainingRecord("DrafterModule", block_size=8, k=7, token_shift=True)
    save_checkpoint(model, ByteTokenizer(), tmp_path / "ckpt", trained)
    assert json.loads((tmp_path / "ckpt/dlm.json").read_text())["training"] == {
        "module": "DrafterModule",
        "block_size": 8,
        "k": 7,
        "token_shift": True,
        "clean": None,  # the record's new field (issue 15): this record does not state it
    }
    assert training_of(load_model(tmp_path / "ckpt")[0]) == trained
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    torch.save(
        {"state_dict": state, "dlm": checkpoint_record(model, ByteTokenizer(), trained)}, tmp_path / "x.ckpt"
    )
    assert training_of(load_model(tmp_path / "x.ckpt")[0]) == trained
    save_checkpoint(model, ByteTokenizer(), tmp_path / "plain")
    assert training_of(load_model(tmp_path / "plain")[0]) is None


def test_training_records_of_newer_writers_read_and_bad_ones_are_named(tmp_path):
    newer = {"module": "TriModeModule", "block_size": 4, "future_field": [1, 2]}
    assert TrainingRecord.from_dict(newer) == TrainingRecord("TriModeModule", block_size=4)
    save_checkpoint(tiny(), ByteTokenizer(), tmp_path / "ckpt")
    record = json.loads((tmp_path / "ckpt/dlm.json").read_text())
    record["training"] = {"module": "DrafterModule", "block_size": "8"}
    (tmp_path / "ckpt/dlm.json").write_text(json.dumps(record))
    with pytest.raises(ValueError, match="the 'training' record's block_size must be int, got '8'"):
        load_model(tmp_path / "ckpt")


def save_sharded(folder, model, extra=None, optimizer=None):
    """A distributed Lightning checkpoint folder as one process writes it: shards + meta.pt."""
    import torch.distributed.checkpoint as dcp

    state = {f"model.{k}": v for k, v in model.state_dict().items()} | (extra or {})
    saved = {
        "state_dict": state,
        "optimizer": optimizer or {"param_groups": [{"lr": 0.1, "betas": (0.9, 0.95)}]},
    }
    dcp.save(saved, storage_writer=dcp.FileSystemWriter(str(folder)), no_dist=True)
    torch.save({"dlm": checkpoint_record(model, ByteTokenizer()), "global_step": 3}, folder / "meta.pt")


def test_a_sharded_checkpoint_folder_runs_no_code(tmp_path):
    import pickle

    from dlm.core.distributed_checkpoint import check_distributed_checkpoint

    model, marker = tiny(), tmp_path / "payload-ran"
    save_sharded(tmp_path / "good", model)
    assert torch.equal(logits(load_model(tmp_path / "good")[0]), logits(model))
    save_sharded(tmp_path / "item", model, {"model.extra": Payload(marker)})
    with pytest.raises(ValueError, match="item: refused to load: it holds a pickled posix.system"):
        load_model(tmp_path / "item")
    save_sharded(tmp_path / "metadata", model)
    (tmp_path / "metadata/.metadata").write_bytes(pickle.dumps(Payload(marker)))
    with pytest.raises(ValueError, match="metadata: refused to load: it holds a pickled posix.system"):
        load_model(tmp_path / "metadata")
    # What a resume reads through torch's own reader is checked first (dlm.training calls this).
    check_distributed_checkpoint(tmp_path / "good")
    save_sharded(tmp_path / "optimizer", model, optimizer={"param_groups": [{"lr": Payload(marker)}]})
    with pytest.raises(ValueError, match="optimizer: refused to load: it holds a pickled posix.system"):
        check_distributed_checkpoint(tmp_path / "optimizer")
    with pytest.raises(
        ValueError, match="metadata: refused to load: its .metadata holds a pickled posix.system"
    ):
        check_distributed_checkpoint(tmp_path / "metadata")
    (tmp_path / "metadata/.metadata").unlink()
    with pytest.raises(ValueError, match="metadata: not a readable distributed checkpoint"):
        check_distributed_checkpoint(tmp_path / "metadata")
    assert not marker.exists()


def test_the_clean_stream_kind_round_trips_and_an_unknown_one_is_named(tmp_path):
    trained = TrainingRecord("ConversionModule", block_size=8, clean="block")
    save_checkpoint(tiny(), ByteTokenizer(), tmp_path / "ckpt", trained)
    assert json.loads((tmp_path / "ckpt/dlm.json").read_text())["training"]["clean"] == "block"
    assert training_of(load_model(tmp_path / "ckpt")[0]) == trained
    with pytest.raises(
        ValueError, match="the 'training' record's clean must be 'causal', 'block' or null, got 'dense'"
    ):
        TrainingRecord.from_dict({"module": "X", "clean": "dense"})
