"""Deprecated alias of dlm.training.trimode.module, removed in the next release."""

from dlm.training.trimode.module import TriModeModule, without_shift_by_default

__all__ = ["TriModeModule", "without_shift_by_default"]
