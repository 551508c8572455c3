"""The LightningModule base every experiment shares (LanguageModule) and the AR baseline."""

from dlm.training.modules.autoregressive import ARLanguageModel
from dlm.training.modules.base import LanguageModule

__all__ = ["ARLanguageModel", "LanguageModule"]
