"""The conversion experiment: AR -> block-diffusion continued training."""

from dlm.training.conversion.module import ConversionModule

__all__ = ["ConversionModule"]
