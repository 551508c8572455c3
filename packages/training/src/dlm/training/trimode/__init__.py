"""The tri-mode experiment: one model trained for AR, block diffusion and self-speculation."""

from dlm.training.trimode.module import TriModeModule, without_shift_by_default

__all__ = ["TriModeModule", "without_shift_by_default"]
