"""GGUF files (llama.cpp's format) to HF checkpoint directories, and from there to our model.

transformers reads GGUF and dequantizes every tensor to float32 (`from_pretrained(..., gguf_file=)`,
which needs the `gguf` and `accelerate` packages: the `dlm-core[gguf]` extra). Its model keeps a
`quantization_config` that save_pretrained refuses, so the weights are moved into a plain model of
the same class first. The directory written that way is read by `from_hf` like any other, so there
is one weight mapping (hf/weights.py), not a second one for GGUF names.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import torch

from dlm.core.atomic import staged_directory
from dlm.core.hf import from_hf
from dlm.core.hf.families import FAMILIES
from dlm.core.model import Transformer
from dlm.core.tokenizers import HFTokenizer

MAGIC = b"GGUF"


def gguf_architecture(path: str | Path) -> str:
    """The file's `general.architecture`, after checking it is a whole GGUF file of a family we read.

    Each failure is one ValueError line naming the file: not GGUF, truncated or damaged (the header
    cannot be parsed or a tensor runs past the end of the file), an architecture outside FAMILIES.
    """
    import gguf

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"GGUF file not found: {path}")
    with path.open("rb") as f:
        magic = f.read(4)
    if magic != MAGIC:
        raise ValueError(f"{path}: not a GGUF file (starts with {magic!r}, expected {MAGIC!r})")
    try:
        reader = gguf.GGUFReader(path)
    except (ValueError, IndexError, EOFError) as err:
        raise ValueError(f"{path}: truncated or damaged GGUF file ({type(err).__name__}: {err})") from None
    size = path.stat().st_size
    end = max((t.data_offset + t.n_bytes for t in reader.tensors), default=0)
    if end > size:
        raise ValueError(f"{path}: truncated GGUF file ({size} bytes, its tensors need {end})")
    field = reader.fields.get("general.architecture")
    if field is None:
        raise ValueError(f"{path}: the GGUF file names no general.architecture")
    arch = field.contents()
    if arch not in FAMILIES:
        raise ValueError(
            f"{path}: GGUF architecture {arch!r} is not supported; expected one of {', '.join(sorted(FAMILIES))}"
        )
    return arch


def gguf_to_hf(path: str | Path, directory: str | Path, keep_gguf: bool = False) -> Path:
    """Write the GGUF file at `path` as an HF checkpoint directory (config.json, model.safetensors in
    float32, tokenizer files) that transformers and `from_hf` load.

    keep_gguf: also copy the GGUF file into the directory, so the source stays beside what was made
    from it (transformers reads it there with `gguf_file=`). The directory is written to a temporary
    sibling and renamed into place, so an interrupted conversion never leaves a half-written one.
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    path = Path(path).absolute()
    gguf_architecture(path)
    with tempfile.TemporaryDirectory(prefix="dlm-gguf-") as alone:
        # transformers also reads the config and tokenizer files beside a GGUF file (and then
        # loses the GGUF's special tokens), so it sees the file alone in a directory.
        (Path(alone) / path.name).symlink_to(path)
        source = {"pretrained_model_name_or_path": alone, "gguf_file": path.name}
        loaded = AutoModelForCausalLM.from_pretrained(**source, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(**source)
    settings = loaded.config.to_dict()
    settings.pop("quantization_config", None)
    config = AutoConfig.for_model(**settings)
    with torch.device("meta"):
        plain = type(loaded)(config)
    plain.load_state_dict(loaded.state_dict(), assign=True)
    plain.tie_weights()
    directory = Path(directory)
    with staged_directory(directory) as tmp:
        plain.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if keep_gguf:
            shutil.copyfile(path, tmp / path.name)
    return directory


def from_gguf(
    path: str | Path, dtype: torch.dtype | None = None, add_mask_token: bool = True
) -> tuple[Transformer, HFTokenizer]:
    """(model, tokenizer) from a GGUF file, on the CPU: `gguf_to_hf` into a temporary directory,
    then `from_hf` (dtype None keeps float32, the dequantized weights; add_mask_token as there)."""
    with tempfile.TemporaryDirectory(prefix="dlm-gguf-") as tmp:
        model, tokenizer = from_hf(gguf_to_hf(path, Path(tmp) / "hf"), dtype, add_mask_token)
    return model, tokenizer
