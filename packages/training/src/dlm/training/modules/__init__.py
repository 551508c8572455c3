from dlm.training.modules.autoregressive import ARLanguageModel
from dlm.training.modules.base import LanguageModule
from dlm.training.modules.conversion import ConversionModule
from dlm.training.modules.drafter import DrafterModule
from dlm.training.modules.trimode import TriModeModule

__all__ = ["ARLanguageModel", "ConversionModule", "DrafterModule", "LanguageModule", "TriModeModule"]
