"""Tokenise a corpus once and keep the token stream on disk.

For each split: `<split>.tokens.npy` (every document's tokens followed by EOS, concatenated) and
`<split>.docs.npy` (the index of the document each token belongs to). Packing to a sequence length
is a reshape of these arrays, so one cache serves every seq_len; the directory name holds a hash
of the corpus settings (and local files' sizes and times) and of the tokenizer spec. The directory
is written to a temporary sibling and renamed into place, so a crash never leaves a partial cache.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np

from dlm.core import corpora
from dlm.core.protocols import Tokenizer
from dlm.training.data.sources import Source, cache_key

log = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    return Path(os.environ.get("DLM_CACHE_DIR", Path.home() / ".cache" / "dlm" / "packed"))


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= 1 << 16 else np.dtype(np.int32)


def tokenize_split(source: Source, split: str, tokenizer: Tokenizer) -> tuple[np.ndarray, np.ndarray]:
    """(tokens, document index of each token) of one split; each document ends with EOS."""
    dtype = token_dtype(tokenizer.vocab_size)
    tokens, docs = [], []
    for n, text in enumerate(t for t in source.documents(split) if t):
        ids = np.asarray(tokenizer.encode(text) + [tokenizer.eos_id], dtype=dtype)
        tokens.append(ids)
        docs.append(np.full(len(ids), n, dtype=np.int32))
    if not tokens:
        return np.zeros(0, dtype=dtype), np.zeros(0, dtype=np.int32)
    return np.concatenate(tokens), np.concatenate(docs)


def cache_directory(source: Source, tokenizer: Tokenizer, root: Path) -> Path:
    slug = re.sub(r"[^A-Za-z0-9]+", "-", Path(source.corpus).name or source.corpus).strip("-")[:40]
    return root / f"{slug or 'corpus'}-{cache_key(source, tokenizer.to_spec())}"


def build(source: Source, tokenizer: Tokenizer, root: Path) -> Path:
    """The cache directory for (source, tokenizer), tokenising the corpus when it is not there yet."""
    directory = cache_directory(source, tokenizer, root)
    if (directory / "meta.json").is_file():
        return directory
    root.mkdir(parents=True, exist_ok=True)
    log.info("tokenising %s into %s", source.corpus, directory)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=root))
    try:
        counts = {}
        for split in corpora.SPLITS:
            tokens, docs = tokenize_split(source, split, tokenizer)
            np.save(tmp / f"{split}.tokens.npy", tokens)
            np.save(tmp / f"{split}.docs.npy", docs)
            counts[split] = int(tokens.size)
        if not any(counts.values()):
            raise ValueError(f"corpus {source.corpus!r} holds no text (empty files?)")
        meta = {"corpus": source.corpus, "tokens": counts, "tokenizer": tokenizer.to_spec().get("kind")}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
        try:
            os.replace(tmp, directory)
        except OSError:
            if not (directory / "meta.json").is_file():  # not a concurrent writer's finished copy
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


def load(directory: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Memory-mapped (tokens, docs) of one split."""
    return (
        np.load(directory / f"{split}.tokens.npy", mmap_mode="r"),
        np.load(directory / f"{split}.docs.npy", mmap_mode="r"),
    )
