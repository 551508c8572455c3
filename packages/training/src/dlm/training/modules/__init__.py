"""The LightningModule base every experiment shares (LanguageModule) and the AR baseline.

ConversionModule, DrafterModule and TriModeModule here are deprecated aliases of
dlm.training.conversion.ConversionModule, dlm.training.drafter.DrafterModule and
dlm.training.trimode.TriModeModule, removed in the next release."""

from importlib import import_module
from typing import Any

from dlm.training.modules.autoregressive import ARLanguageModel
from dlm.training.modules.base import LanguageModule

MOVED = {
    "ConversionModule": "dlm.training.conversion.module",
    "DrafterModule": "dlm.training.drafter.module",
    "TriModeModule": "dlm.training.trimode.module",
}


def __getattr__(name: str) -> Any:
    # Resolved on first use: the experiment modules import modules.base, which runs this file
    # first, so importing them here would be circular.
    if name in MOVED:
        return getattr(import_module(MOVED[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["ARLanguageModel", "ConversionModule", "DrafterModule", "LanguageModule", "TriModeModule"]
