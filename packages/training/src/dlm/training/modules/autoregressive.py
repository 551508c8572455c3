"""Autoregressive language modelling: pretraining from scratch or fine-tuning a checkpoint."""

from __future__ import annotations

import torch
from torch import Tensor

from dlm.core.checkpoint import set_training
from dlm.core.losses import AutoregressiveLoss
from dlm.core.protocols import Tokenizer
from dlm.training.architecture import Architecture
from dlm.training.callbacks import training_record
from dlm.training.modules.base import LanguageModule
from dlm.training.optim import Optimization
from dlm.training.patterns import causal, positions


class ARLanguageModel(LanguageModule):
    """Next-token prediction with a causal mask. Logs train/loss, val/loss and test/loss.

    Args:
        architecture: Model shape from scratch, or a check / small override of init_from's.
        init_from: A dlm checkpoint directory, HF directory or dlm .ckpt to fine-tune.
        tokenizer: From scratch only (default ByteTokenizer); a checkpoint brings its own.
        optimization: AdamW + warmup/cosine settings.
        seq_len: Linked from the data module.
        same_document: Mask attention between the different documents packed into a sample.
    """

    def __init__(
        self,
        architecture: Architecture | None = None,
        init_from: str | None = None,
        tokenizer: Tokenizer | None = None,
        optimization: Optimization | None = None,
        seq_len: int | None = None,
        same_document: bool = False,
    ) -> None:
        super().__init__(architecture, init_from, tokenizer, optimization, seq_len, same_document)
        self.loss = AutoregressiveLoss()
        set_training(self.model, training_record(self))  # replaces a loaded checkpoint's record

    def forward(self, tokens: Tensor, doc_ids: Tensor | None = None) -> Tensor:
        return self.model(tokens, positions(*tokens.shape, tokens.device), causal(doc_ids))

    def step(self, batch: dict[str, Tensor]) -> Tensor:
        tokens = batch["tokens"]
        return self.loss(self(tokens, self.doc_ids(batch)), tokens, batch.get("loss_mask"))

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        loss = self.step(batch)
        # sync_dist: the global mean over processes, the value one process with the whole batch logs.
        self.log("train/loss", loss, prog_bar=True, sync_dist=True)
        self.log_lr()
        return loss

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self.log("val/loss", self.step(batch), prog_bar=True, sync_dist=True)

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self.log("test/loss", self.step(batch), sync_dist=True)

    def predict_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Tensor]:
        """Per-sample next-token loss, with sample indices."""
        tokens = batch["tokens"]
        logits = self(tokens, self.doc_ids(batch))
        losses = [self.loss(logits[i : i + 1], tokens[i : i + 1]) for i in range(tokens.shape[0])]
        return {"index": batch["index"], "loss": torch.stack(losses)}
