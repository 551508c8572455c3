"""Placeholder replaced by the HF I/O work (issue 2, item 7)."""


def from_hf(directory):
    raise NotImplementedError("HF import is being written")


def to_hf(model, tokenizer, directory):
    raise NotImplementedError("HF export is being written")
