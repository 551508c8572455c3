"""FSDP2 sharding (dlm.training.parallel): what parallelize builds on two gloo processes, and the
traps around it: tensor parallelism, fp16, LanguageModule.sharded, folder checkpoints written
crash-safe, and a sharded checkpoint of another model refused before its shards load."""

import os
import pickle
import socket
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from lightning.pytorch.strategies import ModelParallelStrategy

from dlm.attention import Causal
from dlm.core import ByteTokenizer, ModelConfig, Transformer
from dlm.core.checkpoint import checkpoint_record
from dlm.training import Architecture, ARLanguageModel, ShardedStrategy
from dlm.training.checkpointing import check_checkpoint_file
from dlm.training.parallel import data_parallel_mesh, mixed_precision_policy, parallelize

CONFIG = ModelConfig(vocab_size=64, dim=32, n_layers=2, n_heads=4, n_kv_heads=2, max_seq_len=32)


def _sharded_worker(rank: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    torch.set_num_threads(1)
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import DTensor

    torch.manual_seed(0)
    reference = Transformer(CONFIG)
    model = Transformer(CONFIG)
    model.load_state_dict(reference.state_dict())
    names = [n for n, _ in model.named_parameters()]
    parallelize(model, init_device_mesh("cpu", (2,)), activation_checkpointing=True)
    # Before any forward: the root unit stays gathered after one (FSDP2 keeps it for backward).
    sharded = {
        "dtensor": all(isinstance(p, DTensor) for p in model.parameters()),
        "local": {n: (p.to_local().numel(), p.numel()) for n, p in model.named_parameters()},
    }
    tokens = torch.randint(0, 64, (2, 12), generator=torch.Generator().manual_seed(1))
    pos = torch.arange(12).expand(2, -1)
    logits = model(tokens, pos, Causal())
    logits.logsumexp(-1).mean().backward()
    expected = reference(tokens, pos, Causal())
    expected.logsumexp(-1).mean().backward()
    grads = max(
        (p.grad.full_tensor() - r.grad).abs().max().item()
        for p, r in zip(model.parameters(), reference.parameters(), strict=True)
    )
    with torch.no_grad():
        hidden = (model.hidden(tokens, pos, Causal()) - reference.hidden(tokens, pos, Causal())).abs().max()
    report = {
        "names": [n for n, _ in model.named_parameters()] == names,
        **sharded,
        "tied": model.lm_head.weight is model.embed.weight,
        "logits": (logits - expected).abs().max().item(),
        "hidden": hidden.item(),
        "grads": grads,
    }
    if rank == 0:
        torch.save(report, out)
    dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_parallelize_shards_every_parameter_in_halves_over_two_processes(tmp_path):
    out = tmp_path / "report.pt"
    # fork: the children reuse this process's imports (spawn would re-import torch and lightning)
    mp.start_processes(_sharded_worker, args=(free_port(), str(out)), nprocs=2, start_method="fork")
    report = torch.load(out)
    assert report["names"], "activation checkpointing must keep parameter names"
    assert report["dtensor"] and report["tied"]
    for name, (local, full) in report["local"].items():
        assert local * 2 == full, (name, local, full)  # Shard(0) over 2 ranks: half each
    assert report["logits"] < 1e-5 and report["hidden"] < 1e-5
    assert report["grads"] < 1e-6  # same batch on both ranks: the averaged gradient is the full one


def test_fp16_cannot_run_sharded_and_bf16_mixed_is_the_fsdp2_policy():
    policy = mixed_precision_policy("bf16-mixed")
    assert policy.param_dtype == torch.bfloat16 and policy.reduce_dtype == torch.float32
    assert mixed_precision_policy("32-true") is None
    with pytest.raises(
        ValueError, match=r"precision '16-mixed' cannot run sharded \(ModelParallelStrategy\)"
    ):
        mixed_precision_policy("16-mixed")


def test_tensor_parallelism_is_refused():
    with pytest.raises(ValueError, match="tensor_parallel_size=2: dlm shards with FSDP2 only"):
        ShardedStrategy(tensor_parallel_size=2)
    # Lightning's ModelParallelStrategy on one node defaults to DP 1 x TP = devices.
    with pytest.raises(ValueError, match=r"set data_parallel_size to the number of processes \(2\)"):
        data_parallel_mesh(_Mesh(tp=2))


class _Mesh:
    """A DP 1 x TP `tp` device mesh as configure_model sees it."""

    def __init__(self, tp: int) -> None:
        self.tp = tp

    def __getitem__(self, name: str):
        return SimpleNamespace(size=lambda: self.tp if name == "tensor_parallel" else 1)

    def size(self) -> int:
        return self.tp


def test_sharded_recognises_model_parallel_strategies():
    module = ARLanguageModel(architecture=Architecture(dim=16, n_layers=1, n_heads=2, max_seq_len=16))
    for strategy, sharded in ((ShardedStrategy(), True), (ModelParallelStrategy(), True), (object(), False)):
        module._trainer = SimpleNamespace(strategy=strategy)
        assert module.sharded is sharded


def _saver(calls: list):
    """ModelParallelStrategy.save_checkpoint stand-in: writes a shard and meta.pt, or dies midway."""

    def save(self, checkpoint, path, storage_options=None):
        path = Path(path)
        path.mkdir(parents=True)
        (path / "__0_0.distcp").write_text(checkpoint["step"])
        if calls.pop(0) == "crash":
            raise KeyboardInterrupt("killed mid-save")
        (path / ".metadata").write_text("index")
        torch.save({"step": checkpoint["step"]}, path / "meta.pt")

    return save


def test_distributed_checkpoint_is_replaced_whole_or_not_at_all(tmp_path, monkeypatch):
    calls = ["ok", "crash", "ok"]
    monkeypatch.setattr(ModelParallelStrategy, "save_checkpoint", _saver(calls))
    strategy = ShardedStrategy()
    monkeypatch.setattr(strategy, "broadcast", lambda obj, src=0: obj)
    monkeypatch.setattr(strategy, "barrier", lambda name=None: None)
    last = tmp_path / "last.ckpt"
    strategy.save_checkpoint({"step": "1"}, last)
    assert last.is_symlink() and torch.load(last / "meta.pt")["step"] == "1"
    with pytest.raises(KeyboardInterrupt):
        strategy.save_checkpoint({"step": "2"}, last)
    assert (last / "__0_0.distcp").read_text() == "1" and torch.load(last / "meta.pt")["step"] == "1"
    (tmp_path / ".last.ckpt.link-dead").symlink_to(last.resolve().name)  # killed before its rename
    strategy.save_checkpoint({"step": "3"}, last)
    assert (last / "__0_0.distcp").read_text() == "3"
    assert len(list(tmp_path.iterdir())) == 2, "the killed writer's folder and the old one are removed"
    strategy.remove_checkpoint(last)
    assert list(tmp_path.iterdir()) == []


def test_a_folder_that_is_not_a_distributed_checkpoint_is_named(tmp_path):
    (tmp_path / "last.ckpt").mkdir()
    with pytest.raises(
        ValueError, match=r"last.ckpt: a folder but not a distributed checkpoint \(meta.pt and"
    ):
        check_checkpoint_file(str(tmp_path / "last.ckpt"))


def test_a_sharded_checkpoint_of_another_model_is_refused_before_loading(tmp_path):
    folder = tmp_path / "last.ckpt"
    folder.mkdir()
    other = Transformer(CONFIG.replace(dim=48, n_heads=4))
    torch.save({"dlm": checkpoint_record(other, ByteTokenizer())}, folder / "meta.pt")
    strategy = ShardedStrategy()
    module = ARLanguageModel(architecture=Architecture(dim=32, n_layers=2, n_heads=4, max_seq_len=32))
    strategy._lightning_module = module
    with pytest.raises(ValueError, match="holds a model with dim=48 but this run's model has dim=32"):
        strategy.load_checkpoint(folder)


def test_resuming_a_sharded_folder_runs_no_code(tmp_path):
    """`--ckpt_path last` resolves to the folder inside Lightning, past the CLI's file check."""
    folder, marker = tmp_path / "last.ckpt", tmp_path / "payload-ran"
    folder.mkdir()
    model = Transformer(CONFIG.replace(n_kv_heads=None, vocab_size=260))
    torch.save({"dlm": checkpoint_record(model, ByteTokenizer())}, folder / "meta.pt")
    (folder / ".metadata").write_bytes(pickle.dumps(_Payload(marker)))
    strategy = ShardedStrategy()
    strategy._lightning_module = ARLanguageModel(
        architecture=Architecture(dim=32, n_layers=2, n_heads=4, max_seq_len=32)
    )
    with pytest.raises(ValueError, match="refused to load: its .metadata holds a pickled posix.system"):
        strategy.load_checkpoint(folder)
    assert not marker.exists()


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))
