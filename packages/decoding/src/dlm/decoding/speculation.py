"""Deprecated alias of dlm.decoding.verify, removed in the next release."""

from dlm.decoding.verify import Drafts, block_predictions, propose, verify, verify_step

__all__ = ["Drafts", "block_predictions", "propose", "verify", "verify_step"]
