"""AR -> block-diffusion conversion: continue training an AR checkpoint on the BlockDiffusion
objective over [x_t ; x_0] (or a bidirectional baseline)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from dlm.core.checkpoint import set_training
from dlm.core.losses import AutoregressiveLoss, MaskedDiffusionLoss
from dlm.core.masking import Corrupted, Corruption, FixedRatio, PositionDependent
from dlm.core.protocols import Evaluation, Tokenizer
from dlm.training.architecture import Architecture
from dlm.training.callbacks import training_record
from dlm.training.initialization import ensure_mask_token, load_initial
from dlm.training.metrics import MaskedTokenMetrics, masked_predictions, weight_drift
from dlm.training.modules.base import LanguageModule, check_block_size
from dlm.training.optim import Optimization
from dlm.training.patterns import AttentionPattern, BlockCleanPattern, causal, positions


class ConversionModule(LanguageModule):
    """Block-diffusion training of a (usually AR-pretrained) model.

    Each step corrupts the clean batch with `corruption` (seeded by sample index and epoch), shows
    [x_t ; x_0] to the model through `pattern`, and applies the masked-diffusion `loss` with the
    model's token shift. Validation logs the loss and masked-token CE / accuracy by mask-ratio
    bucket; test adds the CE at fixed mask ratios, the converted weights' causal next-token loss
    (test/ar_loss), the weight drift from the initial checkpoint and, for each decoder of
    `evaluation`, tokens per forward, the initial AR model's NLL of its output and its distinct
    4-gram ratio.

    Args:
        init_from: The AR checkpoint to convert (dlm directory, HF directory or dlm .ckpt).
        architecture: Shape from scratch, or a check / override (e.g. token_shift) of init_from's.
        tokenizer: From scratch only; a checkpoint brings its own.
        add_mask_token: Append a mask token when the tokenizer has none (else that is an error).
        block_size: Diffusion block size B (a training block matches a draft block of B-1 masks).
        pattern: BlockCleanPattern (default) or BidirectionalPattern.
        corruption: A dlm.core.masking strategy; default PositionDependent.
        loss: The masked-diffusion loss (weighting and cross-block switches).
        optimization: AdamW + warmup/cosine settings.
        seq_len: Linked from the data module; must be a multiple of block_size.
        same_document: Mask attention between the different documents packed into a sample.
        seed: Seed of every corruption draw, with the sample index and epoch.
        eval_mask_ratios: Mask ratios of the held-out CE at test time.
        eval_pattern: The pattern of that CE; None means `pattern`. BlockCleanPattern scores every
            model in the context left-to-right block decoding gives it (clean prefix, noisy block).
        ratio_buckets: Mask-ratio buckets of the validation metrics.
        evaluation: Test-time decoding (dlm.decoding.Evaluation; decoders such as
            BlockDiffusionDecoder) with the initial checkpoint as the reference AR model.
    """

    def __init__(
        self,
        init_from: str | None = None,
        architecture: Architecture | None = None,
        tokenizer: Tokenizer | None = None,
        add_mask_token: bool = True,
        block_size: int = 16,
        pattern: AttentionPattern | None = None,
        corruption: Corruption | None = None,
        loss: MaskedDiffusionLoss | None = None,
        optimization: Optimization | None = None,
        seq_len: int | None = None,
        same_document: bool = False,
        seed: int = 0,
        eval_mask_ratios: tuple[float, ...] = (0.15, 0.5, 0.9),
        eval_pattern: AttentionPattern | None = None,
        ratio_buckets: int = 4,
        evaluation: Evaluation | None = None,
    ) -> None:
        self.block_size = check_block_size(block_size)
        super().__init__(architecture, init_from, tokenizer, optimization, seq_len, same_document, evaluation)
        ensure_mask_token(self.model, self.tokenizer, add_mask_token)
        self.pattern = pattern or BlockCleanPattern()
        self.corruption = corruption or PositionDependent()
        self.loss = loss or MaskedDiffusionLoss()
        self.ar_loss = AutoregressiveLoss()
        self.seed = seed
        self.eval_ratios = tuple(FixedRatio(r) for r in eval_mask_ratios)
        self.eval_pattern = eval_pattern or self.pattern
        self.val_metrics = MaskedTokenMetrics(ratio_buckets)
        self.ratio_metrics = nn.ModuleList(MaskedTokenMetrics(1) for _ in self.eval_ratios)
        set_training(self.model, training_record(self))
        self.check_evaluation(self.model)

    # -- the objective -------------------------------------------------------------------------
    def forward(
        self,
        noisy: Tensor,
        clean: Tensor,
        doc_ids: Tensor | None = None,
        pattern: AttentionPattern | None = None,
    ) -> Tensor:
        """Logits (batch, L, vocab) of the noisy positions, through `pattern` (default: the training one)."""
        hidden = (pattern or self.pattern).noisy_hidden(self.model, noisy, clean, self.block_size, doc_ids)
        return self.model.lm_head(hidden)

    def objective(self, batch: dict[str, Tensor], epoch: int) -> tuple[Tensor, Corrupted, Tensor]:
        clean = batch["tokens"]
        corrupted = self.corrupt(batch, self.corruption, epoch)
        logits = self(corrupted.tokens, clean, self.doc_ids(batch))
        loss = self.loss(
            logits,
            clean,
            corrupted.mask,
            corrupted.weights,
            self.block_size,
            self.model.config.token_shift,
            self.pattern.cross_block_targets,
            batch.get("loss_mask"),
        )
        return loss, corrupted, logits

    def masked_predictions(
        self, logits: Tensor, clean: Tensor, corrupted: Corrupted
    ) -> tuple[Tensor, Tensor, Tensor]:
        """(CE, correct, block mask ratio) of every masked position's prediction."""
        shift = self.model.config.token_shift
        return masked_predictions(self.loss, logits, clean, corrupted, self.block_size, shift)

    # -- steps ---------------------------------------------------------------------------------
    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        loss, _, _ = self.objective(batch, self.current_epoch)
        # sync_dist: the global mean over processes, the value one process with the whole batch logs.
        self.log("train/loss", loss, prog_bar=True, sync_dist=True)
        self.log_lr()
        return loss

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        # Evaluation draws use epoch 0, so every validation pass scores the same corruption.
        loss, corrupted, logits = self.objective(batch, 0)
        self.log("val/loss", loss, prog_bar=True, sync_dist=True)
        self.val_metrics.update(*self.masked_predictions(logits, batch["tokens"], corrupted))

    def on_validation_epoch_end(self) -> None:
        self.log_dict({f"val/{k}": v for k, v in self.val_metrics.compute().items()})
        self.val_metrics.reset()

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        loss, _, _ = self.objective(batch, 0)
        self.log("test/loss", loss, sync_dist=True)
        # How much of the AR model survives: next-token CE of the converted weights, causal mask,
        # on the scored tokens (distilled data: the answers, not the prompt or the padding).
        tokens, doc_ids = batch["tokens"], self.doc_ids(batch)
        ar_logits = self.model(tokens, positions(*tokens.shape, tokens.device), causal(doc_ids))
        self.log("test/ar_loss", self.ar_loss(ar_logits, tokens, batch.get("loss_mask")), sync_dist=True)
        for strategy, metric in zip(self.eval_ratios, self.ratio_metrics, strict=True):
            corrupted = self.corrupt(batch, strategy, 0)
            logits = self(corrupted.tokens, tokens, doc_ids, self.eval_pattern)
            metric.update(*self.masked_predictions(logits, batch["tokens"], corrupted))
        self.collect_prompts(batch)

    def on_test_start(self) -> None:
        if self.init_from is not None or self.evaluation is not None:
            self.warn_if_sharded("weight drift and decoders")

    def on_test_epoch_end(self) -> None:
        results: dict[str, Any] = {}
        for strategy, metric in zip(self.eval_ratios, self.ratio_metrics, strict=True):
            for name, value in metric.compute().items():
                results[f"test/{name}@{strategy.ratio:g}"] = value
            metric.reset()
        if not self.sharded and (self.init_from is not None or self.evaluation is not None):
            initial = load_initial(self.init_from)[0].to(self.device).eval() if self.init_from else None
            if initial is not None:
                drift = weight_drift(self.model, initial, skip_rows=(self.model.config.mask_token_id,))
                results.update({f"test/drift/{k}": v for k, v in drift.items()})
            results.update(self.evaluate(self.model, reference=initial))
        self.log_dict(results)

    def predict_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Tensor]:
        """Per-sample masked-diffusion loss of the evaluation corruption, with sample indices."""
        corrupted = self.corrupt(batch, self.corruption, 0)
        logits = self(corrupted.tokens, batch["tokens"], self.doc_ids(batch))
        losses = [
            self.loss(
                logits[i : i + 1],
                batch["tokens"][i : i + 1],
                corrupted.mask[i : i + 1],
                corrupted.weights[i : i + 1],
                self.block_size,
                self.model.config.token_shift,
                self.pattern.cross_block_targets,
                None if batch.get("loss_mask") is None else batch["loss_mask"][i : i + 1],
            )
            for i in range(logits.shape[0])
        ]
        return {"index": batch["index"], "loss": torch.stack(losses)}
