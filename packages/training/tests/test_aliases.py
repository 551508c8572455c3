"""The import paths and class_paths of the last release keep working for one more release."""

import importlib

import pytest

import dlm.training
from dlm.training import conversion, drafter, trimode

MOVED = [
    ("dlm.training.modules.drafter", drafter, ["DrafterModule", "check_pair"]),
    ("dlm.training.modules.conversion", conversion, ["ConversionModule"]),
    ("dlm.training.modules.trimode", trimode, ["TriModeModule", "without_shift_by_default"]),
    ("dlm.training.modules", drafter, ["DrafterModule"]),
    ("dlm.training.modules", conversion, ["ConversionModule"]),
    ("dlm.training.modules", trimode, ["TriModeModule"]),
    (
        "dlm.training.draft_blocks",
        drafter,
        ["DraftBlocks", "draft_blocks", "drafter_logits", "target_hidden"],
    ),
    ("dlm.training.target", drafter, ["Target", "fingerprint", "load_target"]),
    ("dlm.training.distill", drafter, ["distill"]),
    ("dlm.training.data.distilled", drafter, ["DistilledDataModule", "DistilledDataset"]),
    ("dlm.training.draft_eval", drafter, ["DraftAccuracy"]),
]


@pytest.mark.parametrize(("old", "new", "names"), MOVED)
def test_an_old_module_path_gives_the_moved_objects(old, new, names):
    module = importlib.import_module(old)
    for name in names:
        assert getattr(module, name) is getattr(new, name)
        assert name in module.__all__


def test_the_shipped_class_paths_resolve():
    for name in ("DrafterModule", "DistilledDataModule", "ConversionModule", "TriModeModule"):
        assert getattr(dlm.training, name).__name__ == name
    assert dlm.training.BlockCausalPattern.clean == "block"
