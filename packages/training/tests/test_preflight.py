import os

import lightning.pytorch as pl
import pytest
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.utilities import rank_zero_only

from dlm.training import ExportCheckpoint
from dlm.training.preflight import check_launcher, check_writable, output_directories

LAUNCHERS = ("NODE_RANK", "GROUP_RANK", "MASTER_ADDR", "MASTER_PORT", "LOCAL_RANK", "WORLD_SIZE", "RANK")


@pytest.fixture
def no_launcher(monkeypatch):
    for name in [*LAUNCHERS, *(k for k in os.environ if k.startswith("SLURM_"))]:
        monkeypatch.delenv(name, raising=False)
    # A Trainer built with NODE_RANK=1 sets the process-wide rank_zero_only.rank, which would
    # silence rank_zero_warn in every later test.
    monkeypatch.setattr(rank_zero_only, "rank", getattr(rank_zero_only, "rank", 0))


def trainer(**kwargs):
    return pl.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, **kwargs)


def test_multi_node_without_a_launcher_is_refused(no_launcher):
    check_launcher(trainer(strategy="ddp", num_nodes=1, devices=2))
    with pytest.raises(ValueError, match=r"num_nodes=2 but no launcher .* \(NODE_RANK and MASTER_ADDR unset"):
        check_launcher(trainer(strategy="ddp", num_nodes=2, devices=1))


def test_multi_node_with_node_rank_and_address_passes(no_launcher, monkeypatch):
    monkeypatch.setenv("NODE_RANK", "1")
    with pytest.raises(ValueError, match=r"\(MASTER_ADDR unset"):
        check_launcher(trainer(strategy="ddp", num_nodes=2, devices=1))
    monkeypatch.setenv("MASTER_ADDR", "10.0.0.1")
    check_launcher(trainer(strategy="ddp", num_nodes=2, devices=1))


def test_every_output_directory_is_checked(tmp_path):
    run = pl.Trainer(
        default_root_dir=tmp_path / "root",
        logger=CSVLogger(tmp_path / "logs"),
        callbacks=[ModelCheckpoint(dirpath=tmp_path / "ckpt"), ExportCheckpoint(str(tmp_path / "out/model"))],
    )
    assert output_directories(run, fitting=True) == {
        "trainer.default_root_dir": tmp_path / "root",
        "CSVLogger.save_dir": tmp_path / "logs",
        "ModelCheckpoint.dirpath": tmp_path / "ckpt",
        "ExportCheckpoint.directory": tmp_path / "out",
    }
    assert set(output_directories(run, fitting=False)) == {"trainer.default_root_dir", "CSVLogger.save_dir"}
    check_writable(run, fitting=True)
    assert (tmp_path / "ckpt").is_dir() and list((tmp_path / "ckpt").iterdir()) == []


def test_an_unwritable_directory_is_named(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    run = pl.Trainer(
        logger=False, callbacks=[ModelCheckpoint(dirpath=blocker / "ckpt")], default_root_dir=tmp_path
    )
    with pytest.raises(ValueError, match=r"cannot write ModelCheckpoint.dirpath .*a-file/ckpt \(.*\)"):
        check_writable(run, fitting=True)
    check_writable(run, fitting=False)
