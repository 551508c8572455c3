"""Deprecated alias of dlm.training.conversion.module, removed in the next release."""

from dlm.training.conversion.module import ConversionModule

__all__ = ["ConversionModule"]
