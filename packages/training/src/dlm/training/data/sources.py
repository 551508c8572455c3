"""Where documents come from: an embedded corpus, local files, or an HF hub dataset.

Every source yields the documents of one split (train / validation / test) in a fixed order. The
split of a document is decided as for the embedded corpora (dlm.core.corpora): documents are cut
into ~16 KB segments at line breaks and each segment goes to the split its name hashes to. A local
or hub document's name is its `id` field when it has one, else a hash of its text (so duplicates
land in the same split). A hub dataset that ships the requested split is used as published;
only the missing splits are carved out of its train split.
"""

from __future__ import annotations

import glob
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dlm.core import corpora

BUILDERS = {
    ".txt": "text",
    ".md": "text",
    ".json": "json",
    ".jsonl": "json",
    ".parquet": "parquet",
    ".csv": "csv",
}
SPLIT_ALIASES = {"train": ("train",), "validation": ("validation", "valid", "dev"), "test": ("test",)}


@dataclass(frozen=True)
class Source:
    """A corpus as the data module names it, with how to read it."""

    corpus: str
    """An embedded name (stdlib-code, shakespeare), a local file, directory or glob, or an HF hub name."""
    text_field: str = "text"
    hub_config: str | None = None
    validation: float = 0.01
    test: float = 0.01
    max_documents: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.corpus, str) or not self.corpus.strip():
            raise ValueError(
                f"corpus must name an embedded corpus, local files or an HF hub dataset, got {self.corpus!r}"
            )
        n = self.max_documents
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
            raise ValueError(f"max_documents must be a positive integer or None, got {n!r}")

    def local_files(self) -> list[Path] | None:
        """The local files of the corpus, or None when it is embedded or a hub name."""
        if self.corpus in corpora.EMBEDDED:
            return None
        if any(c in self.corpus for c in "*?["):
            files = sorted(Path(p) for p in glob.glob(self.corpus, recursive=True) if Path(p).is_file())
            if not files:
                raise FileNotFoundError(f"no files match the corpus pattern {self.corpus!r}")
            return files
        path = Path(self.corpus).expanduser()
        if path.is_file():
            return [path]
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in BUILDERS)
            if not files:
                raise FileNotFoundError(
                    f"corpus directory {path} holds no {'/'.join(sorted(BUILDERS))} files"
                )
            return files
        if self.corpus.startswith((".", "/", "~")) or Path(self.corpus).suffix in BUILDERS:
            raise FileNotFoundError(f"corpus file or directory {self.corpus!r} does not exist")
        return None

    def fingerprint(self) -> dict[str, Any]:
        """What the cached arrays depend on: the settings, and for local files their sizes and times."""
        files = self.local_files()
        stamp = [[str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns] for p in files] if files else None
        return {**self.__dict__, "files": stamp}

    def documents(self, split: str) -> Iterator[str]:
        """The texts of `split`, in a fixed order."""
        if split not in corpora.SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {corpora.SPLITS}")
        if self.corpus in corpora.EMBEDDED:
            docs = (
                d.text for d in corpora.embedded_documents(self.corpus, split, self.validation, self.test)
            )
        else:
            docs = self._dataset_documents(split)
        try:
            for n, text in enumerate(docs):
                if self.max_documents is not None and n >= self.max_documents:
                    return
                yield text
        except UnicodeDecodeError as err:  # datasets does not say which file
            raise ValueError(
                f"corpus {self.corpus!r} holds a file that is not UTF-8 text ({err.reason} at byte {err.start})"
            ) from None

    def _dataset_documents(self, split: str) -> Iterator[str]:
        import datasets

        files = self.local_files()
        if files is not None:
            builders = {BUILDERS.get(p.suffix) for p in files}
            if None in builders or len(builders) > 1:
                raise ValueError(
                    f"corpus {self.corpus!r} mixes file types {sorted({p.suffix for p in files})}; "
                    f"expected files of one type among {sorted(BUILDERS)}"
                )
            builder = builders.pop()
            options = {"sample_by": "document"} if builder == "text" else {}
            available = {
                "train": datasets.load_dataset(
                    builder, data_files=[str(p) for p in files], split="train", streaming=True, **options
                )
            }
        else:
            available = dict(self._hub_dataset())
        own = {s: available[a] for s in corpora.SPLITS for a in SPLIT_ALIASES[s] if a in available}
        if split in own and (split != "train" or len(own) == len(corpora.SPLITS)):
            yield from (self._text(row, n) for n, row in enumerate(own[split], 1))
            return
        if "train" not in own:
            raise ValueError(
                f"corpus {self.corpus!r} has splits {sorted(available)}; expected a 'train' split to carve {split!r} from"
            )
        for n, row in enumerate(own["train"], 1):
            text = self._text(row, n)
            name = str(row["id"]) if row.get("id") is not None else hashlib.sha1(text.encode()).hexdigest()
            for seg in corpora.segments(corpora.Document(name, text)):
                carved = corpora.split_of(seg.name, self.validation, self.test)
                # A segment hashed to a split the dataset publishes itself stays in train.
                if (carved if carved not in own else "train") == split:
                    yield seg.text

    def _hub_dataset(self) -> Any:
        import datasets
        from huggingface_hub import HfApi, constants

        # One request first: datasets retries an unreachable hub 5 times over ~23 s before it fails,
        # and a streamed dataset cannot be read without the hub anyway. Any error ends the run (no
        # network, offline mode, no such dataset, a bad name; the client's types vary by version).
        try:
            HfApi().dataset_info(self.corpus, timeout=constants.HF_HUB_ETAG_TIMEOUT)
        except Exception as err:
            failure = err
        else:
            try:
                return datasets.load_dataset(self.corpus, self.hub_config, streaming=True)
            except (ConnectionError, FileNotFoundError) as err:  # e.g. a gated dataset
                failure = err
        reason = ": ".join([type(failure).__name__, *str(failure).strip().splitlines()[:1]])
        raise ValueError(
            f"corpus {self.corpus!r} is neither an embedded corpus ({', '.join(sorted(corpora.EMBEDDED))}), "
            f"nor a local file, directory or glob, nor a dataset reachable on the HF hub ({reason})"
        )

    def _text(self, row: dict[str, Any], n: int) -> str:
        """Row n's (1-based, in its split) text; a missing value is an empty document."""
        if self.text_field not in row:
            raise ValueError(
                f"corpus {self.corpus!r} rows have fields {sorted(row)}; no text_field {self.text_field!r}"
            )
        text = row[self.text_field]
        if text is not None and not isinstance(text, str):
            raise ValueError(
                f"corpus {self.corpus!r}: row {n} has {self.text_field!r} {text!r} "
                f"({type(text).__name__}), expected a string"
            )
        return text or ""


def cache_key(source: Source, tokenizer_spec: dict[str, Any]) -> str:
    material = {"format": 1, "source": source.fingerprint(), "tokenizer": tokenizer_spec}
    return hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()[:16]
