"""Deprecated alias of dlm.training.drafter.target, removed in the next release."""

from dlm.training.drafter.target import DTYPES, SAMPLE, Target, fingerprint, load_target

__all__ = ["DTYPES", "SAMPLE", "Target", "fingerprint", "load_target"]
