"""Deprecated alias of dlm.decoding.drafter, removed in the next release."""

from dlm.decoding.drafter import UNTRAINED_CROSS_BLOCK, SpeculativeDecoder

__all__ = ["UNTRAINED_CROSS_BLOCK", "SpeculativeDecoder"]
