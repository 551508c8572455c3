"""Backends in dispatch priority order."""

from dlm.attention.backends.base import Backend
from dlm.attention.backends.sdpa import SDPA

BACKENDS: dict[str, Backend] = {b.name: b for b in (SDPA(),)}

__all__ = ["BACKENDS", "Backend", "SDPA"]
