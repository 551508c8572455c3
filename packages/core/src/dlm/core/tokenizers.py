"""Tokenizers: a byte-level default and a wrapper over a checkpoint's tokenizer.json."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ADDED_MASK_TOKEN = "<|mask|>"
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

    def apply_chat_template(self, messages, add_generation_prompt: bool = True) -> str:
        raise ValueError(
            "the byte tokenizer has no chat template; use a checkpoint's tokenizer that ships one"
        )

    def save(self, directory: Path) -> None:
        """Nothing to write: the spec alone recreates it."""

    def as_hf(self) -> HFTokenizer:
        """The same tokenizer as a `tokenizers` byte-level BPE (what an HF export writes).

        The 256 byte symbols come in byte order with no merges, so every byte is its own token with
        its own id; the specials follow at 256..259 and are never matched inside text, as here.
        """
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers

        symbols = _byte_symbols()
        tok = Tokenizer(models.BPE(vocab={symbols[b]: b for b in range(256)}, merges=[]))
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
        tok.decoder = decoders.ByteLevel()
        tok.add_special_tokens(["<pad>", "<eos>", "[MASK]", "<bos>"])
        tok.encode_special_tokens = True
        return HFTokenizer(tok, self.eos_id, self.pad_id, self.bos_id, self.mask_id)


def _byte_symbols() -> list[str]:
    """GPT-2's byte -> printable character table, which the ByteLevel pre-tokenizer and decoder use:
    printable Latin-1 bytes stand for themselves, the rest map to chr(256 + n) in byte order."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    symbols, shifted = {}, 0
    for b in range(256):
        if b in keep:
            symbols[b] = chr(b)
        else:
            symbols[b] = chr(256 + shifted)
            shifted += 1
    return [symbols[b] for b in range(256)]


class HFTokenizer:
    """A `tokenizers` tokenizer (a checkpoint's tokenizer.json) with the special-token ids decoders need.

    `from_directory` reads tokenizer.json and tokenizer_config.json; when there is no mask token and
    add_mask_token is set, "<|mask|>" is appended as a special token, so its id is the old vocabulary
    size (the model then grows one embedding row to match). tokenizer_config.json's
    split_special_tokens (as in transformers) makes special tokens' text encode as ordinary text.
    The chat template comes from chat_template.jinja or tokenizer_config.json's chat_template and
    is kept when the tokenizer is saved (it is not part of the fingerprint: it changes no id).
    """

    def __init__(
        self,
        tok,
        eos_id: int,
        pad_id: int | None = None,
        bos_id: int | None = None,
        mask_id: int | None = None,
        chat_template: str | None = None,
    ):
        self.tok = tok
        self.eos_id, self.bos_id, self.mask_id = eos_id, bos_id, mask_id
        self.pad_id = eos_id if pad_id is None else pad_id
        self.chat_template = chat_template

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
        tok.encode_special_tokens = bool(settings.get("split_special_tokens", False))
        template = chat_template_of(file.parent, settings)
        tokenizer = cls(tok, eos_id, special("pad_token"), special("bos_token"), mask_id, template)
        if mask_id is None and add_mask_token:
            tokenizer.add_mask_token()
        return tokenizer

    def add_mask_token(self) -> int:
        """Append "<|mask|>" as a special token (id = the current vocabulary size) and make it [MASK]."""
        if self.mask_id is not None:
            raise ValueError(f"the tokenizer already has a mask token (id {self.mask_id})")
        self.tok.add_special_tokens([ADDED_MASK_TOKEN])
        self.mask_id = self.tok.token_to_id(ADDED_MASK_TOKEN)
        return self.mask_id

    def use_mask_token(self, name: str) -> int:
        """Make the existing token `name` (say an unused special token) [MASK], keeping the vocabulary:
        a drafter then shares its target's rows exactly."""
        token_id = self.tok.token_to_id(name)
        if token_id is None:
            raise ValueError(f"mask_token {name!r} is not a token of this tokenizer; name an existing token")
        if self.mask_id is not None and self.mask_id != token_id:
            raise ValueError(
                f"the tokenizer already has a mask token ({self.tok.id_to_token(self.mask_id)!r}, id "
                f"{self.mask_id}); mask_token {name!r} would replace it"
            )
        if token_id in (self.eos_id, self.pad_id, self.bos_id):
            raise ValueError(f"mask_token {name!r} (id {token_id}) is the tokenizer's eos, pad or bos token")
        self.mask_id = token_id
        return token_id

    @property
    def vocab_size(self) -> int:
        return self.tok.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> list[int]:
        return self.tok.encode(text, add_special_tokens=False).ids

    def decode(self, ids: Sequence[int]) -> str:
        return self.tok.decode(list(ids), skip_special_tokens=True)

    def apply_chat_template(self, messages, add_generation_prompt: bool = True) -> str:
        """`messages` as the text the checkpoint's chat template makes of them (transformers'
        apply_chat_template(tokenize=False)); ValueError when the tokenizer has none."""
        from dlm.core.chat import render_chat

        if self.chat_template is None:
            raise ValueError(
                "the tokenizer has no chat template (no chat_template.jinja and no chat_template in "
                "tokenizer_config.json); use the raw prompt format"
            )
        names = {"bos_token": self.bos_id, "eos_token": self.eos_id, "pad_token": self.pad_id}
        tokens = {k: self.tok.id_to_token(i) for k, i in names.items() if i is not None}
        return render_chat(self.chat_template, messages, add_generation_prompt, **tokens)

    def to_spec(self) -> dict[str, Any]:
        ids = {"eos_id": self.eos_id, "pad_id": self.pad_id, "bos_id": self.bos_id, "mask_id": self.mask_id}
        # tokenizer.json does not record encode_special_tokens, so the spec carries it.
        split = {"split_special_tokens": True} if self.tok.encode_special_tokens else {}
        template = {"chat_template": self.chat_template} if self.chat_template is not None else {}
        return {"kind": "hf", "json": self.tok.to_str(), **ids, **split, **template}

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
        if self.tok.encode_special_tokens:
            settings["split_special_tokens"] = True
        (directory / "tokenizer_config.json").write_text(json.dumps(settings, indent=2))
        if self.chat_template is not None:
            (directory / CHAT_TEMPLATE).write_text(self.chat_template)


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


CHAT_TEMPLATE = "chat_template.jinja"


def chat_template_of(directory: Path, settings: dict[str, Any]) -> str | None:
    """A checkpoint's chat template: chat_template.jinja (where transformers 4.43+ saves it), else
    tokenizer_config.json's chat_template (a string, or named templates of which "default")."""
    file = directory / CHAT_TEMPLATE
    if file.is_file():
        return file.read_text(encoding="utf-8")
    template = settings.get("chat_template")
    if isinstance(template, list):
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default")
    return template if isinstance(template, str) else None


def tokenizer_fingerprint(tokenizer) -> str:
    """A hash of what the tokenizer computes: its spec (for an HF tokenizer the whole tokenizer.json,
    vocabulary and merges, and the eos/pad/bos ids) without the mask. A drafter that designates one of
    its target's unused tokens as [MASK], or appends "<|mask|>" after the target's last token (into
    the padded embedding rows real checkpoints have), encodes and decodes every other id as its
    target does, so it keeps its target's fingerprint."""
    spec = {k: v for k, v in tokenizer.to_spec().items() if k not in ("mask_id", "chat_template")}
    if spec.get("kind") == "hf":
        content = json.loads(spec["json"])
        added = content.get("added_tokens") or []
        appended = tokenizer.mask_id is not None and tokenizer.mask_id == tokenizer.vocab_size - 1
        if appended and any(
            t.get("id") == tokenizer.mask_id and t.get("content") == ADDED_MASK_TOKEN for t in added
        ):
            content["added_tokens"] = [t for t in added if t.get("id") != tokenizer.mask_id]
        # parsed either way, so the key order and spacing of tokenizer.json do not count
        spec["json"] = content
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def tokenizer_from_spec(spec: dict[str, Any]) -> ByteTokenizer | HFTokenizer:
    """Recreate a tokenizer from its to_spec() record (stored in every checkpoint)."""
    kind = spec.get("kind")
    if kind == "byte":
        return ByteTokenizer()
    if kind == "hf":
        from tokenizers import Tokenizer

        ids = {k: spec.get(k) for k in ("pad_id", "bos_id", "mask_id", "chat_template")}
        tok = Tokenizer.from_str(spec["json"])
        tok.encode_special_tokens = bool(spec.get("split_special_tokens", False))
        return HFTokenizer(tok, spec["eos_id"], **ids)
    raise ValueError(f"unknown tokenizer kind {kind!r} in checkpoint; expected 'byte' or 'hf'")
