"""Tri-mode continued pretraining: one model, three decoding modes (AR, block diffusion,
self-speculation), trained with the TriMode mask over [x_t ; x_0] and the hybrid loss."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import Tensor

from dlm.core.adapter import DraftAdapter, add_adapter, freeze_base
from dlm.core.checkpoint import set_training
from dlm.core.losses import HybridLoss
from dlm.core.masking import Corruption, PositionDependent
from dlm.core.protocols import Evaluation, Tokenizer
from dlm.training.architecture import Architecture
from dlm.training.callbacks import training_record
from dlm.training.initialization import ensure_mask_token
from dlm.training.metrics import MaskedTokenMetrics, masked_predictions
from dlm.training.modules.base import LanguageModule, check_block_size
from dlm.training.optim import Optimization
from dlm.training.patterns import CausalCleanPattern


def without_shift_by_default(architecture: Architecture | None) -> Architecture:
    """Tri-mode's default is no token shift (the public Nemotron code): diffusion logits predict
    the masked position itself. A YAML that sets token_shift keeps its choice."""
    architecture = architecture or Architecture()
    if architecture.token_shift is None:
        architecture = dataclasses.replace(architecture, token_shift=False)
    return architecture


class TriModeModule(LanguageModule):
    """Continued pretraining of an AR checkpoint (or a model from scratch) with the tri-mode objective.

    Each step corrupts the clean batch with `corruption` (seeded by sample index and epoch; each
    block's first position is its anchor and is never corrupted), runs ONE forward over
    [x_t ; x_0] with the TriMode(B, L) mask, and applies `loss` (HybridLoss): masked diffusion on
    the noisy half (diffusion logits) plus next-token CE on the clean half (AR logits; the clean
    half is token-causal and never sees the noisy half, so it is exactly the AR model's forward).
    Logged: the loss, its diffusion and AR terms, and the CE and accuracy of the masked-token
    predictions (validation: also by mask-ratio bucket). Test adds, for each decoder of
    `evaluation` run on held-out prompts: tokens per forward, tokens per verify step (tau), tok/s
    and its ratio to the evaluation's baseline decoder, agreement with the baseline's output, and
    the NLL of the decoded text under this model's own AR mode; the evaluation prints them as a
    table, writes it to <default_root_dir>/decoding.md and, with its plot, saves the
    acceptance-by-position plot beside it.

    Args:
        init_from: The AR checkpoint to continue from (dlm directory, HF directory or dlm .ckpt).
        architecture: Shape from scratch, or a check / override of init_from's; token_shift
            defaults to False here.
        tokenizer: From scratch only; a checkpoint brings its own.
        add_mask_token: Append a mask token when the tokenizer has none (else that is an error).
        block_size: Diffusion block size B; a training block matches a draft block [t, MASK x (B-1)].
        corruption: A dlm.core.masking strategy; default PositionDependent.
        loss: HybridLoss (diffusion and AR weights, masked-diffusion settings).
        optimization: AdamW + warmup/cosine settings.
        seq_len: Linked from the data module; must be a multiple of block_size.
        same_document: Mask attention between the different documents packed into a sample.
        seed: Seed of every corruption draw, with the sample index and epoch.
        ratio_buckets: Mask-ratio buckets of the validation metrics.
        evaluation: Test-time decoding (dlm.decoding.Evaluation; decoders such as ARDecoder,
            SelfSpeculativeDecoder), checked against the model before training; its reference AR
            model is this model's own AR mode.
        adapter: Train a draft adapter (dlm.core.adapter.DraftAdapter) on the frozen base instead of
            every weight: it acts on draft tokens only, so AR decoding stays the base's exactly. The
            clean half then runs without gradients before the noisy half (the AR term has none: its
            weight may be 0).
    """

    def __init__(
        self,
        init_from: str | None = None,
        architecture: Architecture | None = None,
        tokenizer: Tokenizer | None = None,
        add_mask_token: bool = True,
        block_size: int = 8,
        corruption: Corruption | None = None,
        loss: HybridLoss | None = None,
        optimization: Optimization | None = None,
        seq_len: int | None = None,
        same_document: bool = False,
        seed: int = 0,
        ratio_buckets: int = 4,
        evaluation: Evaluation | None = None,
        adapter: DraftAdapter | None = None,
    ) -> None:
        self.block_size = check_block_size(block_size)
        architecture = without_shift_by_default(architecture)
        super().__init__(architecture, init_from, tokenizer, optimization, seq_len, same_document, evaluation)
        if self.tokenizer.mask_id is None and not add_mask_token:
            decoders = sorted(evaluation.decoders) if evaluation is not None else []
            raise ValueError(
                f"the tokenizer{f' of {init_from}' if init_from else ''} has no mask token and "
                f"add_mask_token is false; tri-mode training and the diffusion decoders "
                f"{decoders or ''} need one: set add_mask_token: true"
            )
        ensure_mask_token(self.model, self.tokenizer, add_mask_token)
        self.adapter = adapter
        if adapter is not None:
            add_adapter(self.model, adapter)
            freeze_base(self.model)
        self.pattern = CausalCleanPattern()
        self.corruption = corruption or PositionDependent()
        self.loss = loss or HybridLoss()
        self.seed = seed
        self.val_metrics = MaskedTokenMetrics(ratio_buckets)
        self.test_metrics = MaskedTokenMetrics(1)
        set_training(self.model, training_record(self))
        self.check_evaluation(self.model)

    # -- the objective -------------------------------------------------------------------------
    def forward(self, noisy: Tensor, clean: Tensor, doc_ids: Tensor | None = None) -> Tensor:
        """Logits (batch, 2L, vocab) over [x_t ; x_0]: diffusion logits, then AR logits."""
        if self.adapter is None:
            hidden = self.pattern.hidden(self.model, noisy, clean, self.block_size, doc_ids)
        else:
            both = self.pattern.hidden_over_frozen_clean(self.model, noisy, clean, self.block_size, doc_ids)
            hidden = torch.cat(both, dim=1)
        return self.model.lm_head(hidden)

    def objective(self, batch: dict[str, Tensor], epoch: int) -> dict[str, Tensor]:
        """loss, its diffusion and ar terms, and the masked predictions' ce, correct, ratio."""
        clean = batch["tokens"]
        corrupted = self.corrupt(batch, self.corruption, epoch)
        logits = self(corrupted.tokens, clean, self.doc_ids(batch))
        shift = self.model.config.token_shift
        diffusion, ar = self.loss.terms(
            logits, clean, corrupted.mask, corrupted.weights, self.block_size, shift, batch.get("loss_mask")
        )
        loss = self.loss.diffusion_weight * diffusion + self.loss.ar_weight * ar
        noisy = logits[:, : clean.shape[1]]
        ce, correct, ratio = masked_predictions(
            self.loss.diffusion, noisy, clean, corrupted, self.block_size, shift
        )
        return {
            "loss": loss,
            "diffusion": diffusion,
            "ar_ce": ar,
            "ce": ce,
            "correct": correct,
            "ratio": ratio,
        }

    def log_terms(self, stage: str, out: dict[str, Tensor], **kwargs: Any) -> None:
        self.log(f"{stage}/loss", out["loss"], prog_bar=True, **kwargs)
        self.log(f"{stage}/diffusion", out["diffusion"], **kwargs)
        self.log(f"{stage}/ar_ce", out["ar_ce"], prog_bar=True, **kwargs)

    # -- steps ---------------------------------------------------------------------------------
    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        out = self.objective(batch, self.current_epoch)
        self.log_terms("train", out, sync_dist=True)  # global means, as one process would log them
        if out["ce"].numel():
            self.log("train/masked_ce", out["ce"].detach().mean())
            self.log("train/masked_acc", out["correct"].float().mean(), prog_bar=True)
        self.log_lr()
        return out["loss"]

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        # Evaluation draws use epoch 0, so every validation pass scores the same corruption.
        out = self.objective(batch, 0)
        self.log_terms("val", out, sync_dist=True)
        self.val_metrics.update(out["ce"], out["correct"], out["ratio"])

    def on_validation_epoch_end(self) -> None:
        self.log_dict({f"val/masked_{k}": v for k, v in self.val_metrics.compute().items()})
        self.val_metrics.reset()

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        out = self.objective(batch, 0)
        self.log_terms("test", out, sync_dist=True)
        self.test_metrics.update(out["ce"], out["correct"], out["ratio"])
        self.collect_prompts(batch)

    def on_test_epoch_end(self) -> None:
        results: dict[str, Any] = {f"test/masked_{k}": v for k, v in self.test_metrics.compute().items()}
        self.test_metrics.reset()
        results.update(self.evaluate(self.model, reference=self.model))
        self.log_dict(results)
