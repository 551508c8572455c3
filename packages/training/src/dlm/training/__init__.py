"""dlm.training."""

from dlm.training.version import __version__

__all__ = ["__version__"]
