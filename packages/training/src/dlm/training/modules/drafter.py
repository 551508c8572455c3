"""Deprecated alias of dlm.training.drafter.module, removed in the next release."""

from dlm.training.drafter.module import DrafterModule, check_pair

__all__ = ["DrafterModule", "check_pair"]
