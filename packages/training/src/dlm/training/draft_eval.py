"""Deprecated alias of dlm.training.drafter.accuracy, removed in the next release. The test-time
speculation report that lived here is dlm.decoding.Evaluation's now."""

from dlm.training.drafter.accuracy import DraftAccuracy

__all__ = ["DraftAccuracy"]
