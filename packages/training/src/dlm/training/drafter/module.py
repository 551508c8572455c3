"""A diffusion drafter trained to speculate left-to-right for a frozen AR target."""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor

from dlm.core import Transformer
from dlm.core.checkpoint import set_training
from dlm.core.losses import DrafterLoss, DrafterLossMix, UniformCE
from dlm.core.protocols import Evaluation, Tokenizer
from dlm.core.tokenizers import tokenizer_fingerprint
from dlm.training.architecture import Architecture
from dlm.training.callbacks import training_record
from dlm.training.drafter.accuracy import DraftAccuracy
from dlm.training.drafter.blocks import draft_blocks, drafter_logits, target_hidden, target_logits
from dlm.training.drafter.target import Target, load_target
from dlm.training.initialization import ensure_mask_token
from dlm.training.modules.base import LanguageModule, check_block_size
from dlm.training.optim import Optimization
from dlm.training.patterns import CausalCleanPattern


class DrafterModule(LanguageModule):
    """Trains `self.model`, a block-diffusion drafter, to draft the target's next K tokens.

    Every sample gives one draft block per block of B tokens (`dlm.training.drafter.blocks`): the
    drafter sees `[anchor, MASK x (B-1)]` over the causal text before the anchor, exactly as
    DrafterSpeculativeDecoder drafts, and its K predictions are scored by `loss` against the target's
    tokens. With a DistilledDataModule the labels are the target's greedy continuation
    (`dlm-distill`); with a PackedTextDataModule they are the target's teacher-forced argmax on the
    corpus text (cheaper, approximate after the first position). Validation logs the loss, its
    terms, and the offline draft accuracy by position; test adds, for each decoder of `evaluation`
    (dlm.decoding.DrafterSpeculativeDecoder, greedy and sampled), tau, TPF and acceptance by position with
    the real target verifying, and the evaluation writes its report (drafter configs name it
    drafter_eval) and acceptance.png to default_root_dir.

    Args:
        target: The AR target (dlm directory, HF directory or dlm .ckpt); frozen.
        init_from: The drafter's initial checkpoint, usually a smaller AR model (converted here: a
            mask token is added) or an already converted diffusion model.
        architecture: The drafter's shape from scratch, or a check / override of init_from's.
        tokenizer: From scratch only; a checkpoint brings its own.
        add_mask_token: Append a mask token when the tokenizer has none (the drafter then has one
            row more than a target of the same tokenizer, which check_pair refuses).
        mask_token: An existing token of the shared tokenizer to use as [MASK] instead, so the
            drafter keeps the target's vocabulary (for SmolLM2, "<empty_output>", a special token
            it never emits on code); its embedding row is reset to the mean embedding.
        block_size: The drafter's block size B.
        k: Draft positions scored per block (<= B - 1); None means B - 1, the decode-time block.
        loss: A DrafterLoss or a DrafterLossMix of them; default UniformCE.
        target_dtype: dtype of the frozen target's weights.
        optimization: AdamW + warmup/cosine settings (drafter weights only).
        seq_len: Linked from the data module; must be a multiple of block_size.
        same_document: Mask attention between the different documents packed into a sample.
        evaluation: Test-time decoding (dlm.decoding.Evaluation) with the target as the model; a
            decoder that needs a drafter (DrafterSpeculativeDecoder) is given this one. Its decoders check
            themselves against this drafter's TrainingRecord before training: more drafts than a
            block holds and cross_block (no loss trains the logit after the block) are refused, a
            draft block other than training's [anchor, MASK x (B-1)] is warned about.

    A target without a mask token (SmolLM2-135M-Instruct) is served by `mask_token`: growing the
    drafter by one "<|mask|>" row would make the two vocabularies differ, and DrafterSpeculativeDecoder
    would need to slice the drafter's logits; reusing a special token keeps every id shared. The
    drafter may start from the target itself cut to its first layers (`init_from` the target with
    `architecture: {n_layers: 4}`).

    Checkpoints record how the drafter was trained (dlm.core.checkpoint.TrainingRecord: module,
    block size, k, shift, a token-causal clean stream), and so does the trained model object, so
    decoders can check it.
    """

    # The layout blocks.drafter_logits trains (token-causal clean text), for the TrainingRecord.
    pattern = CausalCleanPattern()

    def __init__(
        self,
        target: str,
        init_from: str | None = None,
        architecture: Architecture | None = None,
        tokenizer: Tokenizer | None = None,
        add_mask_token: bool = True,
        mask_token: str | None = None,
        block_size: int = 8,
        k: int | None = None,
        loss: DrafterLossMix | DrafterLoss | None = None,
        target_dtype: Literal["float32", "bfloat16", "float16"] = "float32",
        optimization: Optimization | None = None,
        seq_len: int | None = None,
        same_document: bool = False,
        evaluation: Evaluation | None = None,
    ) -> None:
        self.block_size = check_block_size(block_size)
        k = block_size - 1 if k is None else k
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= block_size - 1:
            raise ValueError(
                f"k={k!r} draft positions do not fit the drafter's block size {block_size}: a block holds "
                f"the anchor and at most {block_size - 1} drafts"
            )
        self.k = k
        super().__init__(architecture, init_from, tokenizer, optimization, seq_len, same_document, evaluation)
        ensure_mask_token(self.model, self.tokenizer, add_mask_token, mask_token)
        self.target = load_target(target, target_dtype)
        check_pair(self.model, self.tokenizer, self.target)
        self.loss = loss if isinstance(loss, DrafterLossMix) else DrafterLossMix([loss or UniformCE()])
        set_training(self.model, training_record(self))
        self.check_evaluation(self.target.model, drafter=self.model)
        self.val_accuracy, self.test_accuracy = DraftAccuracy(k), DraftAccuracy(k)

    def teacher(self) -> tuple[str, str]:
        """The target: the drafter learns its answers."""
        return self.target.path, self.target.fingerprint

    # -- the objective -------------------------------------------------------------------------
    def target_model(self) -> Transformer:
        model = self.target.model
        if model.embed.weight.device != self.device:
            model.to(self.device)
        return model

    def draft(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor | None]:
        """(drafter logits (N, K, V), target tokens (N, K), target logits (N, K, V) or None) of every
        scored draft block of the batch."""
        tokens, doc_ids = batch["tokens"], self.doc_ids(batch)
        distilled = "target_made" in batch
        valid = batch["target_made"] if distilled else torch.ones_like(tokens, dtype=torch.bool)
        blocks = draft_blocks(valid, self.block_size, self.k)
        logits = drafter_logits(self.model, tokens, blocks, self.block_size, doc_ids)
        teacher = None
        if not distilled or self.loss.needs_target_logits:
            target = self.target_model()
            teacher = target_logits(target, target_hidden(target, tokens, doc_ids), blocks)
        labels = tokens[blocks.rows[:, None], blocks.label_positions] if distilled else teacher.argmax(-1)
        return logits, labels, teacher if self.loss.needs_target_logits else None

    def objective(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor], Tensor, Tensor]:
        logits, labels, teacher = self.draft(batch)
        if not len(labels):
            raise ValueError(
                f"a batch holds no draft block with {self.k} labels: the samples are too short or hold too "
                "little target continuation for k"
            )
        total, parts = self.loss.parts(logits, labels, teacher)
        return total, parts, logits, labels

    # -- steps ---------------------------------------------------------------------------------
    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        loss, parts, _, _ = self.objective(batch)
        # sync_dist: the global mean over processes, the value one process with the whole batch logs.
        self.log("train/loss", loss, prog_bar=True, sync_dist=True)
        if len(parts) > 1:
            self.log_dict({f"train/{name}": value for name, value in parts.items()})
        self.log_lr()
        return loss

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        loss, parts, logits, labels = self.objective(batch)
        self.log("val/loss", loss, prog_bar=True, sync_dist=True)
        self.log_dict({f"val/{name}": value for name, value in parts.items()}, sync_dist=True)
        self.val_accuracy.update(logits, labels)

    def on_validation_epoch_end(self) -> None:
        self.log_dict({f"val/draft/{k}": v for k, v in self.val_accuracy.compute().items()})
        self.val_accuracy.reset()

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        loss, _, logits, labels = self.objective(batch)
        self.log("test/loss", loss, sync_dist=True)
        self.test_accuracy.update(logits, labels)
        self.collect_prompts(batch)

    def on_test_epoch_end(self) -> None:
        results: dict[str, Any] = {f"test/draft/{k}": v for k, v in self.test_accuracy.compute().items()}
        self.test_accuracy.reset()
        results.update(self.evaluate(self.target_model(), drafter=self.model))
        self.log_dict(results)


def check_pair(drafter: Transformer, tokenizer: Tokenizer, target: Target) -> None:
    """Refuse a drafter whose vocabulary or tokenizer is not its target's: same rows, and the same
    tokenizer content (tokenizer_fingerprint: vocabulary, merges, eos/pad/bos; the mask it designates
    aside), since DrafterSpeculativeDecoder compares drafted ids with the target's one for one."""
    dv, tv = drafter.config.vocab_size, target.model.config.vocab_size
    if dv != tv:
        raise ValueError(
            f"the drafter's vocabulary ({dv} tokens) differs from the target's ({tv} tokens, {target.path}); "
            "a drafter must share its target's tokenizer (name an unused token as mask_token rather than "
            "adding one)"
        )
    ours, theirs = tokenizer_fingerprint(tokenizer), tokenizer_fingerprint(target.tokenizer)
    if ours != theirs:
        kinds = tokenizer.to_spec().get("kind"), target.tokenizer.to_spec().get("kind")
        raise ValueError(
            f"the drafter's tokenizer ({kinds[0]}, {tokenizer.vocab_size} tokens, eos {tokenizer.eos_id}, "
            f"fingerprint {ours}) differs from the target's ({kinds[1]}, {target.tokenizer.vocab_size} "
            f"tokens, eos {target.tokenizer.eos_id}, fingerprint {theirs}, {target.path}): other "
            "vocabulary, merges or special tokens; a drafter must share its target's tokenizer"
        )
