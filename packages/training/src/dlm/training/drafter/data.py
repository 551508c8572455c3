"""Distilled data (written by dlm-distill): a teacher's greedy answers to prompts, for the drafter
(the target's answers) and for tri-mode and conversion (the model's own answers)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, Dataset

from dlm.core.protocols import Tokenizer
from dlm.training.sampler import ResumableLoader, ResumableSampler

STAGE_SPLITS = {
    "fit": ("train", "validation"),
    "validate": ("validation",),
    "test": ("test",),
    "predict": ("test",),
}


class DistilledDataset(Dataset):
    """Sample i: the last seq_len tokens of prefix + continuation (right-padded when a continuation
    stopped early at EOS), with `target_made` marking the tokens the target generated."""

    def __init__(self, rows, seq_len: int, pad_id: int) -> None:
        self.rows, self.seq_len, self.pad_id = rows, seq_len, pad_id

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, Any]:
        row = self.rows[index]
        prefix, continuation = row["prefix"], row["continuation"]
        text = (prefix + continuation)[-self.seq_len :]
        made = [False] * (len(text) - len(continuation)) + [True] * min(len(continuation), len(text))
        pad = self.seq_len - len(text)
        return {
            "tokens": torch.tensor(text + [self.pad_id] * pad),
            "target_made": torch.tensor(made + [False] * pad),
            "doc_ids": torch.zeros(self.seq_len, dtype=torch.long),
            "index": index,
        }


class AnchoredDataset(Dataset):
    """Sample i: prompt + answer laid out as the decoders see them. Left padding puts the prompt's
    last token at a block start (it anchors the first answer block, as the decoders' prefill commits
    every prompt token but the last); right padding fills seq_len (a multiple of the block size).
    `loss_mask` marks the answer tokens (the only ones corrupted and scored; `target_made` too, for
    the drafter) and `doc_ids` give each padding its own document, so with same_document the text
    never attends to padding."""

    def __init__(self, rows, seq_len: int, block_size: int, pad_id: int) -> None:
        self.rows, self.seq_len, self.block_size, self.pad_id = rows, seq_len, block_size, pad_id

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, Any]:
        row = self.rows[index]
        prompt, answer = row["prefix"], row["continuation"]
        left = -(len(prompt) - 1) % self.block_size
        if left + len(prompt) >= self.seq_len:
            raise ValueError(
                f"sample {index}: a prompt of {len(prompt)} tokens (+{left} padding to anchor it at a "
                f"block start) leaves no room for its answer in seq_len={self.seq_len}; raise seq_len"
            )
        answer = answer[: self.seq_len - left - len(prompt)]
        right = self.seq_len - left - len(prompt) - len(answer)
        tokens = [self.pad_id] * left + prompt + answer + [self.pad_id] * right
        scored = [False] * (left + len(prompt)) + [True] * len(answer) + [False] * right
        docs = [1] * left + [0] * (len(prompt) + len(answer)) + [2] * right
        return {
            "tokens": torch.tensor(tokens),
            "loss_mask": torch.tensor(scored),
            "target_made": torch.tensor(scored),
            "doc_ids": torch.tensor(docs),
            "index": index,
        }


class DistilledDataModule(pl.LightningDataModule):
    """The splits of a dlm-distill output directory, for DrafterModule.

    `target_identity` (the teacher's path and fingerprint from meta.json) lets the module refuse data
    made by another model. Without `block_size`, a sample is the tail of prefix + continuation:
    choose seq_len = C + 1 + m B (C the continuation length, B the drafter's block size) so that the
    last prefix token is a block's anchor and every block after it is scored; earlier blocks carry
    no labels. With `block_size` (prompts of any length: tri-mode, conversion), a sample is the
    anchored layout of AnchoredDataset, with a `loss_mask` on the answer; train with
    same_document: true.

    Args:
        path: The directory dlm-distill wrote.
        seq_len: Tokens per sample, at most prefix_len + continuation_len (None: exactly that).
        batch_size: Samples per training batch (per process).
        eval_batch_size: Samples per validation/test batch; None means batch_size.
        tokenizer: Linked from the model; must be of the kind the target used.
        vocab_size: Linked from the model: every token id must be below it.
        num_workers: DataLoader worker processes.
        seed: Seed of the training order.
        block_size: Lay samples out anchored at blocks of this size (see above); None: the tail.
    """

    def __init__(
        self,
        path: str,
        seq_len: int | None = None,
        batch_size: int = 16,
        eval_batch_size: int | None = None,
        tokenizer: Tokenizer | None = None,
        vocab_size: int | None = None,
        num_workers: int = 0,
        seed: int = 0,
        block_size: int | None = None,
    ) -> None:
        super().__init__()
        self.path = Path(path)
        meta_file = self.path / "meta.json"
        if not meta_file.is_file():
            raise FileNotFoundError(f"{path} is not a dlm-distill output directory (no meta.json)")
        self.meta = json.loads(meta_file.read_text())
        self.target_identity: dict[str, str] = self.meta["target"]
        longest = self.meta["prefix_len"] + self.meta["continuation_len"]
        if isinstance(block_size, int) and block_size > 1:  # room for up to B - 1 left padding
            longest = -(-(longest + block_size - 1) // block_size) * block_size
        seq_len = longest if seq_len is None else seq_len
        if isinstance(seq_len, bool) or not isinstance(seq_len, int) or not 0 < seq_len <= longest:
            raise ValueError(
                f"seq_len must be a positive integer <= prefix_len + continuation_len = {longest} "
                "(+ B - 1 left padding, rounded up to the block size B when given) "
                f"of {path}, got {seq_len!r}"
            )
        if tokenizer is not None and tokenizer.to_spec().get("kind") != self.meta["tokenizer"]:
            raise ValueError(
                f"{path} was tokenised with a {self.meta['tokenizer']} tokenizer, the model has a "
                f"{tokenizer.to_spec().get('kind')} one"
            )
        self.seq_len, self.batch_size = seq_len, batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.pad_id = tokenizer.pad_id if tokenizer is not None else 0
        self.vocab_size, self.num_workers, self.seed = vocab_size, num_workers, seed
        if block_size is not None and (
            isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 2
        ):
            raise ValueError(f"block_size must be an integer >= 2 or None, got {block_size!r}")
        if block_size is not None and seq_len % block_size:
            raise ValueError(f"seq_len {seq_len} is not a multiple of block_size {block_size}")
        self.block_size = block_size
        self.datasets: dict[str, Dataset] = {}

    def setup(self, stage: str | None = None) -> None:
        for split in STAGE_SPLITS.get(stage, ("train", "validation", "test")):
            if split not in self.datasets and (split != "validation" or self.has(split)):
                self.datasets[split] = self.dataset(split)

    def has(self, split: str) -> bool:
        return any((self.path / split).glob("shard-*"))

    def dataset(self, split: str) -> Dataset:
        import datasets
        import pyarrow.compute as pc

        shards = sorted((self.path / split).glob("shard-*"))
        if not shards:
            raise ValueError(
                f"{self.path} has no finished {split!r} shards; run dlm-distill with samples.{split} set "
                "(a rerun completes an interrupted one)"
            )
        expected = -(-self.meta["samples"].get(split, 0) // self.meta["shard_size"])
        if len(shards) < expected:
            raise ValueError(
                f"{self.path}: the {split!r} split has {len(shards)} of {expected} shards; rerun dlm-distill "
                "to finish it"
            )
        rows = datasets.concatenate_datasets([datasets.load_from_disk(str(s)) for s in shards])
        if self.vocab_size is not None:
            top = max(
                pc.max(pc.list_flatten(rows.data.column(c))).as_py() or 0 for c in ("prefix", "continuation")
            )
            if top >= self.vocab_size:
                raise ValueError(
                    f"{self.path} holds token id {top}, outside the model's vocabulary of {self.vocab_size}"
                )
        if self.block_size is None:
            return DistilledDataset(rows, self.seq_len, self.pad_id)
        if not any(pc.list_value_length(rows.data.column("continuation")).to_pylist()):
            raise ValueError(f"{self.path}: every {split} answer is empty; nothing to train on")
        return AnchoredDataset(rows, self.seq_len, self.block_size, self.pad_id)

    def _loader(self, split: str, batch_size: int, train: bool) -> DataLoader:
        if split not in self.datasets:
            self.datasets[split] = self.dataset(split)
        dataset, sampler, loader = self.datasets[split], None, DataLoader
        if train:
            trainer = self.trainer
            rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
            sampler, loader = ResumableSampler(dataset, world, rank, self.seed), ResumableLoader
        return loader(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            drop_last=train,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", self.batch_size, train=True)

    def val_dataloader(self) -> DataLoader | list:
        """Validation is optional: without a distilled validation split, fit runs none."""
        if not self.has("validation"):
            return []
        return self._loader("validation", self.eval_batch_size, train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", self.eval_batch_size, train=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test", self.eval_batch_size, train=False)
