"""Packed fixed-length samples, each carrying its global sample index and per-token document ids."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, IterableDataset, get_worker_info

from dlm.core.protocols import Tokenizer


def sample(tokens: np.ndarray, docs: np.ndarray, index: int) -> dict[str, torch.Tensor | int]:
    return {
        "tokens": torch.from_numpy(np.asarray(tokens, dtype=np.int64)),
        "doc_ids": torch.from_numpy(np.asarray(docs, dtype=np.int64)),
        "index": index,
    }


class PackedDataset(Dataset):
    """Sample i is tokens[i L : (i+1) L] of a split's token stream (the tail shorter than L is dropped)."""

    def __init__(self, tokens: np.ndarray, docs: np.ndarray, seq_len: int) -> None:
        self.tokens, self.docs, self.seq_len = tokens, docs, seq_len

    def __len__(self) -> int:
        return len(self.tokens) // self.seq_len

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | int]:
        if not 0 <= index < len(self):
            raise IndexError(f"sample {index} is outside [0, {len(self)})")
        span = slice(index * self.seq_len, (index + 1) * self.seq_len)
        return sample(self.tokens[span], self.docs[span], index)


class StreamingPackedDataset(IterableDataset):
    """Packs documents as they stream in, with the same sample indices PackedDataset would give.

    Each of (processes x workers) shards keeps the samples whose index falls to it (index mod
    shards); every shard reads the whole stream, which keeps indices exact at the cost of reading.
    `resume`, set by dlm.training.sampler.ResumableStreamLoader from a checkpoint, makes the next
    pass skip the batches this process already trained on (read, not yielded).
    """

    resume: tuple[int, int] | None = None
    """(batches this process consumed in the interrupted pass, batch size), for the next pass only."""

    def __init__(
        self,
        documents: Callable[[], Iterator[str]],
        tokenizer: Tokenizer,
        seq_len: int,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.documents, self.tokenizer, self.seq_len = documents, tokenizer, seq_len
        self.rank, self.world_size = rank, world_size

    def __iter__(self) -> Iterator[dict[str, torch.Tensor | int]]:
        worker = get_worker_info()
        workers, worker_id = (worker.num_workers, worker.id) if worker else (1, 0)
        resume, self.resume = self.resume, None
        # DataLoader takes batches from its workers in turn, starting with worker 0, so after b
        # batches the next one is worker b mod W's: a resumed pass rotates the workers' shards to
        # continue that turn, and each skips the batches its shard already gave.
        batches, size = resume or (0, 0)
        role = (worker_id + batches) % workers
        shards, shard = self.world_size * workers, self.rank * workers + role
        skip = max(0, (batches - role + workers - 1) // workers) * size
        tokens: list[int] = []
        docs: list[int] = []
        index = 0
        for n, text in enumerate(t for t in self.documents() if t):
            ids = self.tokenizer.encode(text) + [self.tokenizer.eos_id]
            tokens += ids
            docs += [n] * len(ids)
            while len(tokens) >= self.seq_len:
                if index % shards == shard and skip:
                    skip -= 1
                elif index % shards == shard:
                    yield sample(np.array(tokens[: self.seq_len]), np.array(docs[: self.seq_len]), index)
                del tokens[: self.seq_len], docs[: self.seq_len]
                index += 1
