import signal
import subprocess
import sys
import textwrap

import pytest
import torch

from dlm.core import ModelConfig
from dlm.core.checkpoint import checkpoint_record
from dlm.core.model import Transformer
from dlm.core.tokenizers import ByteTokenizer
from dlm.training import checkpointing
from dlm.training.checkpointing import AtomicCheckpointIO, check_checkpoint_file, check_same_model


def test_save_and_load(tmp_path):
    io = AtomicCheckpointIO()
    io.save_checkpoint({"w": torch.arange(5)}, tmp_path / "deep/dir/last.ckpt")
    assert torch.equal(io.load_checkpoint(tmp_path / "deep/dir/last.ckpt")["w"], torch.arange(5))
    assert [p.name for p in (tmp_path / "deep/dir").iterdir()] == ["last.ckpt"]


def test_a_failed_save_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    io, path = AtomicCheckpointIO(), tmp_path / "last.ckpt"
    io.save_checkpoint({"w": torch.zeros(3)}, path)

    def broken(obj, f):
        f.write(b"PK\x03\x04 half a zip")
        raise OSError("disk full")

    monkeypatch.setattr(checkpointing.torch, "save", broken)
    with pytest.raises(OSError, match="disk full"):
        io.save_checkpoint({"w": torch.ones(3)}, path)
    assert torch.equal(io.load_checkpoint(path)["w"], torch.zeros(3))
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


KILLED_WRITER = """
import io, sys, time, torch
from dlm.training import checkpointing

path = sys.argv[1]
checkpointing.AtomicCheckpointIO().save_checkpoint({"w": torch.zeros(1000)}, path)
real_save = torch.save

def half_then_hang(obj, f):
    buffer = io.BytesIO()
    real_save(obj, buffer)
    data = buffer.getvalue()
    f.write(data[: len(data) // 2])
    f.flush()
    print("half written", flush=True)
    time.sleep(120)

checkpointing.torch.save = half_then_hang
checkpointing.AtomicCheckpointIO().save_checkpoint({"w": torch.ones(1000)}, path)
"""


def test_sigkill_during_a_write_leaves_the_previous_checkpoint(tmp_path):
    path = tmp_path / "last.ckpt"
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(KILLED_WRITER), str(path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline() == "half written\n"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
    io = AtomicCheckpointIO()
    assert torch.equal(io.load_checkpoint(path)["w"], torch.zeros(1000))
    (partial,) = [p for p in tmp_path.iterdir() if p != path]
    assert partial.name.startswith(".last.ckpt.") and partial.name.endswith(".tmp")
    io.save_checkpoint({"w": torch.ones(2)}, tmp_path / "epoch=0-step=3.ckpt")
    assert not partial.exists(), "the next save removes the killed writer's temporary file"


def test_unreadable_and_missing_checkpoints_are_one_line_errors(tmp_path):
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ValueError, match=r"bad.ckpt: not a readable checkpoint \(") as info:
        AtomicCheckpointIO().load_checkpoint(bad)
    assert "\n" not in str(info.value)
    with pytest.raises(FileNotFoundError, match="checkpoint .*missing.ckpt does not exist"):
        AtomicCheckpointIO().load_checkpoint(tmp_path / "missing.ckpt")


def test_a_checkpoint_of_another_model_is_refused_by_field():
    config = ModelConfig(vocab_size=260, dim=32, n_layers=2, n_heads=2)
    record = checkpoint_record(Transformer(config), ByteTokenizer())
    check_same_model({"dlm": record}, config.replace(attention_backend="sdpa"))  # a runtime choice
    with pytest.raises(ValueError, match="x.ckpt holds a model with dim=32 but this run's model has dim=64"):
        check_same_model({"dlm": record}, config.replace(dim=64), "x.ckpt")
    with pytest.raises(ValueError, match="not written by dlm.training"):
        check_same_model({"state_dict": {}}, config)


def test_a_truncated_checkpoint_is_refused_before_it_is_read(tmp_path):
    path = tmp_path / "cut.ckpt"
    AtomicCheckpointIO().save_checkpoint({"w": torch.zeros(10_000)}, path)
    check_checkpoint_file(str(path))
    for name in ("last", "best", "hpc", None):
        check_checkpoint_file(name)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ValueError, match=r"cut.ckpt: not a readable checkpoint \("):
        check_checkpoint_file(str(path))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        check_checkpoint_file(str(tmp_path / "nowhere.ckpt"))
