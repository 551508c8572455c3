"""dlm.training: LightningModules, the packed-text data module, metrics, callbacks and the `dlm` CLI."""

from dlm.training.architecture import Architecture
from dlm.training.callbacks import ExportCheckpoint
from dlm.training.checkpointing import AtomicCheckpointIO
from dlm.training.conversion import ConversionModule
from dlm.training.data import PackedTextDataModule
from dlm.training.drafter import DistilledDataModule, DrafterModule
from dlm.training.guard import NonFiniteGuard
from dlm.training.metrics import MaskedTokenMetrics, weight_drift
from dlm.training.modules import ARLanguageModel, LanguageModule
from dlm.training.optim import Optimization
from dlm.training.parallel import ShardedStrategy, parallelize
from dlm.training.patterns import (
    AttentionPattern,
    BidirectionalPattern,
    BlockCleanPattern,
    CausalCleanPattern,
)
from dlm.training.prompts import PromptSource, StdlibCodeTasks
from dlm.training.random_state import RandomState
from dlm.training.results import ResultsWriter
from dlm.training.sampler import ResumableLoader, ResumableSampler
from dlm.training.trimode import TriModeModule
from dlm.training.version import __version__

__all__ = [
    "ARLanguageModel",
    "AtomicCheckpointIO",
    "Architecture",
    "AttentionPattern",
    "BidirectionalPattern",
    "BlockCleanPattern",
    "ConversionModule",
    "DistilledDataModule",
    "DrafterModule",
    "ExportCheckpoint",
    "LanguageModule",
    "MaskedTokenMetrics",
    "NonFiniteGuard",
    "Optimization",
    "PackedTextDataModule",
    "PromptSource",
    "RandomState",
    "ResumableLoader",
    "ResultsWriter",
    "ResumableSampler",
    "ShardedStrategy",
    "StdlibCodeTasks",
    "TriModeModule",
    "CausalCleanPattern",
    "__version__",
    "parallelize",
    "weight_drift",
]
