"""The training order, split across processes, and resumable in the middle of an epoch.

The order of epoch e is a permutation of the dataset seeded by (seed, e), the one
`torch.utils.data.DistributedSampler` draws; it is consumed in global batches, and of W processes
the r-th takes samples r, r + W, r + 2W, ... So W processes with b samples each see, step by step,
the samples one process with W b samples sees, which is what makes a multi-node run reproduce a
single-process one.

Lightning saves the state of a training loader that has `state_dict` / `load_state_dict` in every
checkpoint and restores it before the loader is iterated. The state is the epoch and the number of
samples of that epoch's order already consumed (counted in batches handed to the training loop,
so batches that DataLoader workers prefetched are not counted); a resumed epoch starts right after
them, even on a different number of processes. A streamed corpus (StreamingPackedDataset) has no
order to permute: its loader's state is the number of batches this pass consumed, and the resumed
pass reads past them (same number of processes, workers and batch size).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler


class ResumableSampler(DistributedSampler):
    """DistributedSampler(shuffle=True, drop_last=True) that can start an epoch part-way through.

    A DistributedSampler subclass, so Lightning keeps it instead of injecting its own.
    """

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int, seed: int) -> None:
        super().__init__(
            dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed, drop_last=True
        )
        self.start = 0
        """Samples of this epoch's order consumed before the current iteration began."""
        self.resume_at: tuple[int, int] | None = None
        """(epoch, consumed samples) from a checkpoint, applied to the next iteration of that epoch."""

    def order(self) -> list[int]:
        """This epoch's global order (DistributedSampler's permutation, cut to a multiple of W)."""
        generator = torch.Generator()
        generator.manual_seed(self.seed + self.epoch)
        return torch.randperm(len(self.dataset), generator=generator).tolist()[: self.total_size]

    def __iter__(self) -> Iterator[int]:
        resume, self.resume_at = self.resume_at, None
        self.start = resume[1] if resume is not None and resume[0] == self.epoch else 0
        rest = self.order()[self.start :]
        rest = rest[: len(rest) // self.num_replicas * self.num_replicas]
        return iter(rest[self.rank :: self.num_replicas])


class ResumableLoader(DataLoader):
    """The training DataLoader over a ResumableSampler; its state is the position in the epoch."""

    yielded = 0
    """Batches handed out by the current iteration."""

    def __iter__(self) -> Iterator[Any]:
        self.yielded = 0
        return self._counted(super().__iter__())

    def _counted(self, batches: Iterator[Any]) -> Iterator[Any]:
        for batch in batches:
            self.yielded += 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        sampler = self.sampler
        consumed = sampler.start + self.yielded * self.batch_size * sampler.num_replicas
        return {
            "epoch": sampler.epoch,
            "consumed": consumed,
            "seed": sampler.seed,
            "samples": len(sampler.dataset),
        }

    def load_state_dict(self, state: dict[str, int]) -> None:
        sampler = self.sampler
        saved = (state["seed"], state["samples"])
        if saved != (sampler.seed, len(sampler.dataset)):
            raise ValueError(
                f"the checkpoint's training order (seed {saved[0]}, {saved[1]} samples) differs from this "
                f"run's (seed {sampler.seed}, {len(sampler.dataset)} samples): resume with the same data "
                "settings (corpus, seq_len, seed)"
            )
        epoch, consumed = state["epoch"], state["consumed"]
        if (sampler.total_size - consumed) // (self.batch_size * sampler.num_replicas) == 0:
            epoch, consumed = epoch + 1, 0  # the saved epoch was finished
        sampler.set_epoch(epoch)  # workers may draw indices before the fit loop sets the epoch
        sampler.resume_at = (epoch, consumed)


class ResumableStreamLoader(DataLoader):
    """The training DataLoader over a StreamingPackedDataset; its state is the batches consumed in
    the current pass of the stream."""

    yielded = 0
    """Batches handed out by the current pass."""
    start = 0
    """Batches of this pass consumed before it was interrupted (a resumed pass)."""
    pending = 0
    """`start` of the next pass, from a checkpoint."""
    finished = False

    def __iter__(self) -> Iterator[Any]:
        self.yielded, self.finished = 0, False
        self.start, self.pending = self.pending, 0
        batches = super().__iter__()
        if self.num_workers > 0:  # the workers hold their own copies of the dataset now
            self.dataset.resume = None
        return self._counted(batches)

    def _counted(self, batches: Iterator[Any]) -> Iterator[Any]:
        for batch in batches:
            self.yielded += 1
            yield batch
        self.finished = True

    def state_dict(self) -> dict[str, int]:
        return {"batches": 0 if self.finished else self.start + self.yielded}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.pending = state["batches"]
        self.dataset.resume = (self.pending, self.batch_size) if self.pending else None
