"""The packed-text LightningDataModule."""

from __future__ import annotations

import functools
from pathlib import Path

import lightning.pytorch as pl
from torch.utils.data import DataLoader

from dlm.core import ByteTokenizer
from dlm.core.protocols import Tokenizer
from dlm.training.data import cache
from dlm.training.data.datasets import PackedDataset, StreamingPackedDataset
from dlm.training.data.sources import Source
from dlm.training.sampler import ResumableLoader, ResumableSampler, ResumableStreamLoader

STAGE_SPLITS = {
    "fit": ("train", "validation"),
    "validate": ("validation",),
    "test": ("test",),
    "predict": ("test",),
}


class PackedTextDataModule(pl.LightningDataModule):
    """Text corpora tokenised once, cached, and packed into fixed-length samples.

    Each sample is a dict: `tokens` (L,), `doc_ids` (L,) (the document each token comes from, for
    a same-document attention mask) and `index`, the sample's global index in its split, from which
    corruption strategies seed their draws. Splits are deterministic (see `sources`). The training
    order is a permutation seeded by (seed, epoch), consumed in global batches split across
    processes (dlm.training.sampler), and a checkpoint records the position in it, so a resumed
    run sees exactly the batches the uninterrupted one would.

    Args:
        corpus: `stdlib-code` or `shakespeare` (embedded, offline), a local file / directory / glob
            of .txt, .md, .json, .jsonl, .parquet or .csv files, or an HF hub dataset name.
        seq_len: Tokens per sample.
        batch_size: Samples per training batch (per process).
        eval_batch_size: Samples per validation/test batch; None means batch_size.
        tokenizer: Linked from the model (its checkpoint's tokenizer); ByteTokenizer when alone.
        vocab_size: Linked from the model: every token id must be below it.
        text_field: The column holding the text in json/parquet/csv/hub rows.
        hub_config: The hub dataset's configuration name.
        streaming: Tokenise and pack on the fly instead of caching arrays (for corpora too large
            to tokenise up front); samples come in corpus order.
        max_documents: Read at most this many documents per split.
        validation_fraction: Share of (hashed) segments held out for validation.
        test_fraction: Share held out for test.
        cache_dir: Where tokenised arrays live; default $DLM_CACHE_DIR or ~/.cache/dlm/packed.
        num_workers: DataLoader worker processes.
        seed: Seed of the training order.
    """

    def __init__(
        self,
        corpus: str = "stdlib-code",
        seq_len: int = 256,
        batch_size: int = 16,
        eval_batch_size: int | None = None,
        tokenizer: Tokenizer | None = None,
        vocab_size: int | None = None,
        text_field: str = "text",
        hub_config: str | None = None,
        streaming: bool = False,
        max_documents: int | None = None,
        validation_fraction: float = 0.01,
        test_fraction: float = 0.01,
        cache_dir: str | None = None,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        for name, value in (("seq_len", seq_len), ("batch_size", batch_size)):
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not (
            0 <= validation_fraction < 1
            and 0 <= test_fraction < 1
            and validation_fraction + test_fraction < 1
        ):
            raise ValueError(
                f"validation_fraction={validation_fraction} and test_fraction={test_fraction} must be "
                "fractions that leave some text for training"
            )
        self.source = Source(
            corpus, text_field, hub_config, validation_fraction, test_fraction, max_documents
        )
        self.source.local_files()  # a missing local corpus fails here, before a run starts
        self.tokenizer = tokenizer or ByteTokenizer()
        self.vocab_size = vocab_size or self.tokenizer.vocab_size
        self.seq_len, self.batch_size = seq_len, batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.streaming, self.num_workers, self.seed = streaming, num_workers, seed
        self.cache_root = Path(cache_dir) if cache_dir else cache.default_cache_dir()
        self.datasets: dict[str, PackedDataset | StreamingPackedDataset] = {}

    def prepare_data(self) -> None:
        if not self.streaming:
            cache.build(self.source, self.tokenizer, self.cache_root)

    def setup(self, stage: str | None = None) -> None:
        for split in STAGE_SPLITS.get(stage, ("train", "validation", "test")):
            if split not in self.datasets:
                self.datasets[split] = self.dataset(split)

    def dataset(self, split: str) -> PackedDataset | StreamingPackedDataset:
        """The packed samples of one split (tokenising the corpus first if no cache holds it)."""
        if self.streaming:
            rank, world = self._rank_and_world()
            documents = functools.partial(self.source.documents, split)
            return StreamingPackedDataset(documents, self.tokenizer, self.seq_len, rank, world)
        tokens, docs = cache.load(cache.build(self.source, self.tokenizer, self.cache_root), split)
        if tokens.size < self.seq_len:
            raise ValueError(
                f"the {split} split of corpus {self.source.corpus!r} holds {tokens.size} tokens, "
                f"fewer than one sequence of seq_len={self.seq_len}; use a larger corpus or a shorter seq_len"
            )
        top = int(tokens.max())
        if top >= self.vocab_size:
            raise ValueError(
                f"the {split} split of {self.source.corpus!r} holds token id {top}, outside the model's "
                f"vocabulary of {self.vocab_size}"
            )
        return PackedDataset(tokens, docs, self.seq_len)

    def _rank_and_world(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def _loader(self, split: str, batch_size: int, train: bool) -> DataLoader:
        self.setup({"train": "fit", "validation": "validate"}.get(split, "test"))
        dataset = self.datasets[split]
        sampler, loader = None, DataLoader
        if train and isinstance(dataset, PackedDataset):
            rank, world = self._rank_and_world()
            sampler, loader = ResumableSampler(dataset, world, rank, self.seed), ResumableLoader
        elif train:
            loader = ResumableStreamLoader
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

    def val_dataloader(self) -> DataLoader:
        return self._loader("validation", self.eval_batch_size, train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", self.eval_batch_size, train=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test", self.eval_batch_size, train=False)
