"""Tri-mode continued pretraining: one model, three decoding modes (AR, block diffusion,
self-speculation), trained with the TriMode mask over [x_t ; x_0] and the hybrid loss."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor
from tqdm.auto import tqdm

from dlm.attention import Mask, TriMode
from dlm.attention.masks import SameDocument
from dlm.core.losses import HybridLoss, target_cross_entropy
from dlm.core.masking import Corrupted, Corruption, PositionDependent
from dlm.core.protocols import Decoder, DecodeStats, Tokenizer
from dlm.training.architecture import Architecture
from dlm.training.evaluation import (
    DecodeEval,
    decode_interleaved,
    decode_metrics,
    decode_table,
    distinct_ngrams,
)
from dlm.training.initialization import ensure_mask_token
from dlm.training.metrics import MaskedTokenMetrics, block_ratios
from dlm.training.modules.base import LanguageModule, check_block_size
from dlm.training.optim import Optimization
from dlm.training.patterns import positions

Plot = Callable[[Sequence[tuple[str, DecodeStats]], str], Any]
"""(decoder name and stats pairs, PNG path) -> anything, e.g. dlm.decoding.plot.plot_acceptance."""


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
    predictions (validation: also by mask-ratio bucket). Test adds, for each configured decoder
    run on held-out prompts: tokens per forward, tokens per verify step (tau), tok/s and its ratio
    to the `baseline` decoder, agreement with the baseline's output, and the NLL of the decoded
    text under this model's own AR mode; it prints them as a table and, with `plot`, saves the
    acceptance-by-position plot to <default_root_dir>/acceptance.png.

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
        decoders: dlm.core.protocols.Decoder objects by name (e.g. dlm.decoding.ARDecoder,
            SelfSpeculativeDecoder), run at test on held-out prompts.
        decode: Prompts and lengths for the decoders.
        baseline: The decoder the others are compared with (speed ratio, agreement).
        plot: Saves the acceptance-by-position plot, e.g. dlm.decoding.plot.plot_acceptance.
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
        decoders: dict[str, Decoder] | None = None,
        decode: DecodeEval | None = None,
        baseline: str | None = "ar",
        plot: Plot | None = None,
    ) -> None:
        self.block_size = check_block_size(block_size)
        self.decoders = dict(decoders or {})
        if baseline is not None and self.decoders and baseline not in self.decoders:
            raise ValueError(
                f"baseline decoder {baseline!r} is not among the decoders {sorted(self.decoders)}; "
                "add it (e.g. an ARDecoder) or set baseline: null"
            )
        architecture = without_shift_by_default(architecture)
        super().__init__(architecture, init_from, tokenizer, optimization, seq_len, same_document)
        if self.tokenizer.mask_id is None and not add_mask_token:
            raise ValueError(
                f"the tokenizer{f' of {init_from}' if init_from else ''} has no mask token and "
                f"add_mask_token is false; tri-mode training and the diffusion decoders "
                f"{sorted(self.decoders) or ''} need one: set add_mask_token: true"
            )
        ensure_mask_token(self.model, self.tokenizer, add_mask_token)
        self.corruption = corruption or PositionDependent()
        self.loss = loss or HybridLoss()
        self.seed = seed
        self.val_metrics = MaskedTokenMetrics(ratio_buckets)
        self.test_metrics = MaskedTokenMetrics(1)
        self.decode = decode or DecodeEval()
        self.baseline = baseline
        self.plot = plot
        self.prompts: list[list[int]] = []
        self.check_decoders()

    def check_decoders(self) -> None:
        """Fail now, not after training, when a decoder cannot run on this model (no mask token,
        an option the model does not support): each one decodes a one-token prompt with no budget,
        which runs its checks and no forward. Warn when its draft block differs from training's."""
        for name, decoder in self.decoders.items():
            try:
                decoder.generate(self.model, [[self.tokenizer.eos_id]], 0)
            except ValueError as err:
                raise ValueError(f"decoder {name!r} ({type(decoder).__name__}) cannot run: {err}") from None
            k, block = getattr(decoder, "k", None), getattr(decoder, "block_size", None)
            if (k is not None and k != self.block_size - 1) or (
                block is not None and block != self.block_size
            ):
                rank_zero_warn(
                    f"decoder {name!r} drafts {k if k is not None else block - 1} masks per block but "
                    f"training blocks hold block_size - 1 = {self.block_size - 1}"
                )

    # -- the objective -------------------------------------------------------------------------
    def forward(self, noisy: Tensor, clean: Tensor, doc_ids: Tensor | None = None) -> Tensor:
        """Logits (batch, 2L, vocab) over [x_t ; x_0]: diffusion logits, then AR logits."""
        batch, length = noisy.shape
        mask: Mask = TriMode(self.block_size, length)
        if doc_ids is not None:
            mask = mask & SameDocument.for_noisy_clean(doc_ids)
        pos = positions(batch, length, noisy.device).repeat(1, 2)
        return self.model(torch.cat([noisy, clean], dim=1), pos, mask)

    def corrupt(self, batch: dict[str, Tensor], epoch: int) -> Corrupted:
        mask_id = self.model.config.mask_token_id
        return self.corruption(batch["tokens"], batch["index"], epoch, self.block_size, mask_id, self.seed)

    def objective(self, batch: dict[str, Tensor], epoch: int) -> dict[str, Tensor]:
        """loss, its diffusion and ar terms, and the masked predictions' ce, correct, ratio."""
        clean = batch["tokens"]
        corrupted = self.corrupt(batch, epoch)
        logits = self(corrupted.tokens, clean, self.doc_ids(batch))
        shift = self.model.config.token_shift
        diffusion, ar = self.loss.terms(
            logits, clean, corrupted.mask, corrupted.weights, self.block_size, shift
        )
        loss = self.loss.diffusion_weight * diffusion + self.loss.ar_weight * ar
        # Masked-token CE / accuracy: the corrupted positions only (no cross-block target), unweighted.
        t = self.loss.diffusion.targets(
            corrupted.mask, corrupted.weights, self.block_size, shift, cross_block=False
        )
        noisy = logits[:, : clean.shape[1]]
        ce = target_cross_entropy(noisy, clean, t)
        correct = noisy[t.rows, t.logit_positions].argmax(-1) == clean[t.rows, t.positions]
        ratio = block_ratios(corrupted.mask, self.block_size)[t.rows, t.positions]
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

    def on_test_start(self) -> None:
        if self.decoders:
            self.warn_if_sharded("decoders")

    def on_test_epoch_end(self) -> None:
        results = {f"test/masked_{k}": v for k, v in self.test_metrics.compute().items()}
        self.test_metrics.reset()
        if self.decoders and self.prompts:
            runs = self.run_decoders()
            metrics = decode_metrics(runs, self.prompts, self.model, self.baseline)
            for name, (outputs, _) in runs.items():
                metrics[f"{name}/distinct4"] = distinct_ngrams(outputs, 4)
            results.update({f"test/{k}": v for k, v in metrics.items()})
            if self.trainer.is_global_zero:
                self.report(runs, metrics)
            self.prompts = []
        self.log_dict(results)

    def run_decoders(self) -> dict[str, tuple[list[list[int]], DecodeStats]]:
        """Each decoder's (outputs, stats) on the collected prompts, interleaved batch by batch,
        with a progress bar."""
        was_training = self.model.training
        self.model.eval()
        size = self.decode.batch_size or len(self.prompts)
        bar = tqdm(
            total=len(self.decoders) * -(-len(self.prompts) // size),
            desc="decoding",
            unit="batch",
            disable=not (self.trainer.is_global_zero and self.trainer.progress_bar_callback),
        )

        def advance(name: str) -> None:
            bar.set_postfix_str(name)
            bar.update()

        runs = decode_interleaved(
            self.decoders,
            self.model,
            self.prompts,
            self.decode.max_new_tokens,
            self.decode.batch_size,
            advance,
        )
        bar.close()
        self.model.train(was_training)
        return runs

    def report(self, runs: dict[str, tuple[list[list[int]], DecodeStats]], metrics: dict[str, float]) -> None:
        """Print the table and write it to <default_root_dir>/decoding.md; save the plot beside it."""
        root = Path(self.trainer.default_root_dir)
        root.mkdir(parents=True, exist_ok=True)
        title = (
            f"{len(self.prompts)} held-out prompts of {self.decode.prompt_tokens} tokens, "
            f"{self.decode.max_new_tokens} new tokens each, decoded {self.decode.batch_size or len(self.prompts)} "
            f"at a time; block size {self.block_size}"
        )
        table = decode_table(list(runs), metrics, self.baseline)
        (root / "decoding.md").write_text(f"{title}\n\n{table}\n")
        print(f"\n{title}\n{table}\ntable: {root / 'decoding.md'}")
        speculative = [(name, stats) for name, (_, stats) in runs.items() if stats.accepted]
        if self.plot is not None and speculative:
            path = root / "acceptance.png"
            self.plot(speculative, str(path))
            print(f"acceptance-by-position plot: {path}")
