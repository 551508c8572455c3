"""Tokenizers: a byte-level default and a wrapper over a checkpoint's tokenizer.json."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

MASK_TOKEN_NAMES = ("<|mask|>", "[MASK]", "<mask>", "<|MASK|>", "<|mdm_mask|>")


class ByteTokenizer:
    """UTF-8 bytes 0..255 plus specials: <pad>=256, <eos>=257, [MASK]=258, <bos>=259."""

    pad_id, eos_id, mask_id, bos_id = 256, 257, 258, 259
    vocab_size = 260

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids: Sequence[int]) -> str:
        return bytes(i for i in ids if 0 <= i < 256).decode("utf-8", errors="replace")

    def to_spec(self) -> dict[str, Any]:
        return {"kind": "byte"}

    def save(self, directory: Path) -> None:
        """Nothing to write: the spec alone recreates it."""


class HFTokenizer:
    """A `tokenizers` tokenizer (a checkpoint's tokenizer.json) with the special-token ids decoders need.

    `from_directory` reads tokenizer.json and tokenizer_config.json; when there is no mask token and
    add_mask_token is set, "<|mask|>" is appended as a special token, so its id is the old vocabulary
    size (the model then grows one embedding row to match).
    """

    def __init__(
        self,
        tok,
        eos_id: int,
        pad_id: int | None = None,
        bos_id: int | None = None,
        mask_id: int | None = None,
    ):
        self.tok = tok
        self.eos_id, self.bos_id, self.mask_id = eos_id, bos_id, mask_id
        self.pad_id = eos_id if pad_id is None else pad_id

    @classmethod
    def from_directory(cls, path: str | Path, add_mask_token: bool = True) -> HFTokenizer:
        from tokenizers import Tokenizer

        path = Path(path)
        file = path / "tokenizer.json" if path.is_dir() else path
        if not file.is_file():
            raise FileNotFoundError(f"tokenizer file not found: {file} (expected a tokenizer.json)")
        tok = Tokenizer.from_file(str(file))
        settings = _read_json(file.parent / "tokenizer_config.json")

        def special(key: str) -> int | None:
            entry = settings.get(key)
            entry = entry.get("content") if isinstance(entry, dict) else entry
            return tok.token_to_id(entry) if isinstance(entry, str) else None

        eos_id = special("eos_token")
        if eos_id is None:
            raise ValueError(
                f"{file.parent}: tokenizer_config.json names no eos_token; decoders need one to stop"
            )
        names = ([settings["mask_token"]] if isinstance(settings.get("mask_token"), str) else []) + list(
            MASK_TOKEN_NAMES
        )
        mask_id = next((tok.token_to_id(n) for n in names if tok.token_to_id(n) is not None), None)
        if mask_id is None and add_mask_token:
            tok.add_special_tokens(["<|mask|>"])
            mask_id = tok.token_to_id("<|mask|>")
        return cls(tok, eos_id, special("pad_token"), special("bos_token"), mask_id)

    @property
    def vocab_size(self) -> int:
        return self.tok.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> list[int]:
        return self.tok.encode(text, add_special_tokens=False).ids

    def decode(self, ids: Sequence[int]) -> str:
        return self.tok.decode(list(ids), skip_special_tokens=True)

    def to_spec(self) -> dict[str, Any]:
        ids = {"eos_id": self.eos_id, "pad_id": self.pad_id, "bos_id": self.bos_id, "mask_id": self.mask_id}
        return {"kind": "hf", "json": self.tok.to_str(), **ids}

    def save(self, directory: Path) -> None:
        """Write tokenizer.json and a tokenizer_config.json naming the special tokens."""
        self.tok.save(str(directory / "tokenizer.json"))
        names = {
            "eos_token": self.eos_id,
            "bos_token": self.bos_id,
            "pad_token": self.pad_id,
            "mask_token": self.mask_id,
        }
        settings = {key: self.tok.id_to_token(i) for key, i in names.items() if i is not None}
        settings["tokenizer_class"] = "PreTrainedTokenizerFast"
        (directory / "tokenizer_config.json").write_text(json.dumps(settings, indent=2))


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


def tokenizer_from_spec(spec: dict[str, Any]) -> ByteTokenizer | HFTokenizer:
    """Recreate a tokenizer from its to_spec() record (stored in every checkpoint)."""
    kind = spec.get("kind")
    if kind == "byte":
        return ByteTokenizer()
    if kind == "hf":
        from tokenizers import Tokenizer

        ids = {k: spec.get(k) for k in ("pad_id", "bos_id", "mask_id")}
        return HFTokenizer(Tokenizer.from_str(spec["json"]), spec["eos_id"], **ids)
    raise ValueError(f"unknown tokenizer kind {kind!r} in checkpoint; expected 'byte' or 'hf'")
