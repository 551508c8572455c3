"""dlm.decoding."""

from dlm.decoding.version import __version__

__all__ = ["__version__"]
