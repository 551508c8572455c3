"""Checks of settings every package shares, each failing with one line that names the value: a
positive integer, a dtype by name, a device this machine can use."""

from __future__ import annotations

from typing import Any, Literal

import torch

DType = Literal["float32", "float64", "bfloat16", "float16"]
DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "float64": torch.float64,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}
"""torch dtypes by the names configs and command lines use."""


def positive(name: str, value: Any, optional: bool = False) -> Any:
    """`value` when it is a positive int (or None, when `optional`); else a ValueError naming it."""
    if optional and value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        expected = "a positive integer or None" if optional else "a positive integer"
        raise ValueError(f"{name} must be {expected}, got {value!r}")
    return value


def dtype(name: str) -> torch.dtype:
    """The torch dtype called `name` (one of DTYPES)."""
    if name not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {name!r}")
    return DTYPES[name]


def check_device(name: str, flag: str = "device") -> torch.device:
    """The device `name`, refused (ValueError) when torch cannot name it or allocate on it here."""
    try:
        device = torch.device(name)
        torch.empty(0, device=device)
    except (RuntimeError, AssertionError) as err:  # torch raises both for an unusable device
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"{flag} {name!r} cannot be used here ({reason})") from None
    return device
