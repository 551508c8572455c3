"""Deprecated alias of dlm.decoding.base and dlm.decoding.stream, removed in the next release."""

from dlm.decoding.base import CachedDecoder, Decoding, Progress, check_prompts, mask_token, positive
from dlm.decoding.stream import Stream, Timer, device_of, new_cache

__all__ = [
    "CachedDecoder",
    "Decoding",
    "Progress",
    "Stream",
    "Timer",
    "check_prompts",
    "device_of",
    "mask_token",
    "new_cache",
    "positive",
]
