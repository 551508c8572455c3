"""The frozen AR target of a drafter: loaded in its stored dtype, fingerprinted, then cast.

The fingerprint is a hash of the config and of a fixed sample of every weight tensor. Distilled
drafter data records the fingerprint of the target that generated it, and DrafterModule refuses
data made by another target. Hashing a strided sample (up to 4096 values per tensor, as float32)
instead of every byte keeps it to about a second at 8B parameters; fine-tuning moves every weight,
so any real change of the model changes the sample. It is taken on the weights as stored (read as
float32, which is exact for bf16/fp16/fp32), before any cast, so dlm-distill running the target in
bf16 and a module holding it in fp32 agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dlm.core import Transformer, from_hf, load_model
from dlm.core.checkpoint import RECORD
from dlm.core.checks import DTYPES
from dlm.core.fingerprint import model_fingerprint
from dlm.core.protocols import Tokenizer


@dataclass
class Target:
    """The frozen AR target. Held by DrafterModule as a plain attribute, not a submodule: it is never
    trained, saved in the module's checkpoints, or sharded (under FSDP every process holds a copy)."""

    model: Transformer
    tokenizer: Tokenizer
    path: str
    fingerprint: str


def load_target(path: str, dtype: str = "float32") -> Target:
    """The target at `path` (dlm directory, HF directory or dlm .ckpt), fingerprinted as stored, cast
    to `dtype` (float32, bfloat16 or float16), in eval mode without gradients."""
    source = Path(path)
    if not source.exists():
        raise FileNotFoundError(f"target: {path} does not exist")
    if dtype not in DTYPES:
        raise ValueError(f"target dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if source.is_dir() and not (source / RECORD).is_file() and (source / "config.json").is_file():
        model, tokenizer = from_hf(source, add_mask_token=False)
    else:
        model, tokenizer = load_model(source)
    identity = model_fingerprint(model)
    model = model.to(DTYPES[dtype]).eval().requires_grad_(False)
    return Target(model, tokenizer, str(path), identity)
