"""dlm.core: the Llama-family backbone, KV cache, tokenizers, checkpoints, HF and GGUF I/O."""

from dlm.core.cache import KVCache
from dlm.core.checkpoint import CleanStream, TrainingRecord, load_checkpoint, load_model, save_checkpoint
from dlm.core.config import ModelConfig
from dlm.core.gguf import from_gguf
from dlm.core.hf import from_hf, to_hf
from dlm.core.model import Transformer
from dlm.core.protocols import Decoder, Evaluation, Tokenizer
from dlm.core.stats import DecodeStats, EvaluationResult
from dlm.core.tokenizers import ByteTokenizer, HFTokenizer
from dlm.core.version import __version__

__all__ = [
    "ByteTokenizer",
    "CleanStream",
    "DecodeStats",
    "Decoder",
    "Evaluation",
    "EvaluationResult",
    "HFTokenizer",
    "KVCache",
    "ModelConfig",
    "Tokenizer",
    "TrainingRecord",
    "Transformer",
    "__version__",
    "from_gguf",
    "from_hf",
    "load_checkpoint",
    "load_model",
    "save_checkpoint",
    "to_hf",
]
