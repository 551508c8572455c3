"""Import and export of HF (transformers) Llama, Qwen2, Qwen3 and Mistral checkpoints."""

from dlm.core.hf.io import from_hf, to_hf

__all__ = ["from_hf", "to_hf"]
