"""Packed-text data: sources, the token cache, datasets and the LightningDataModule."""

from dlm.training.data.datasets import PackedDataset, StreamingPackedDataset
from dlm.training.data.module import PackedTextDataModule
from dlm.training.data.sources import Source

__all__ = ["PackedDataset", "PackedTextDataModule", "Source", "StreamingPackedDataset"]
