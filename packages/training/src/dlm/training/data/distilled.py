"""Deprecated alias of dlm.training.drafter.data, removed in the next release."""

from dlm.training.drafter.data import STAGE_SPLITS, DistilledDataModule, DistilledDataset

__all__ = ["STAGE_SPLITS", "DistilledDataModule", "DistilledDataset"]
