"""What every dlm LightningModule shares: the network at self.model, its tokenizer, the optimizer,
the checkpoint record that lets dlm.core.load_model read a Lightning .ckpt, and the test-time
decoding evaluation (prompts collected from the test data, the evaluation run at the end)."""

from __future__ import annotations

import logging
import resource
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.strategies import FSDPStrategy, ModelParallelStrategy
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor, nn

from dlm.core.checkpoint import checkpoint_record
from dlm.core.fingerprint import model_fingerprint
from dlm.core.masking import Corrupted, Corruption
from dlm.core.protocols import Evaluation, Tokenizer
from dlm.training.architecture import Architecture
from dlm.training.callbacks import training_record
from dlm.training.checkpointing import check_same_model
from dlm.training.initialization import initial_model
from dlm.training.optim import Optimization, configure
from dlm.training.parallel import data_parallel_mesh, is_sharded, parallelize
from dlm.training.patterns import AttentionPattern

log = logging.getLogger("lightning.pytorch.dlm")  # Lightning's handler prints it on every rank


def check_block_size(block_size: Any) -> int:
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 2:
        raise ValueError(f"block_size must be an integer >= 2, got {block_size!r}")
    return block_size


class LanguageModule(pl.LightningModule):
    """Base class. Subclasses implement the steps.

    Args:
        architecture: Model shape from scratch, or a check / small override of init_from's.
        init_from: A dlm checkpoint directory, HF directory or dlm .ckpt to start from.
        tokenizer: From scratch only (default ByteTokenizer); a checkpoint brings its own.
        optimization: AdamW + warmup/cosine settings.
        seq_len: Linked from the data module; checked against max_seq_len (and the block size).
        same_document: Mask attention between the different documents packed into a sample.
        evaluation: Test-time decoding (dlm.core.protocols.Evaluation, e.g. dlm.decoding.Evaluation):
            its decoders run at the end of test on prompts taken from the test data.

    A diffusion module sets `block_size` before calling this __init__; seq_len must then be a
    multiple of it.
    """

    block_size: int | None = None
    pattern: AttentionPattern | None = None
    """How a diffusion module shows [x_t ; x_0] to its model; its `clean` goes into the TrainingRecord."""

    def __init__(
        self,
        architecture: Architecture | None = None,
        init_from: str | None = None,
        tokenizer: Tokenizer | None = None,
        optimization: Optimization | None = None,
        seq_len: int | None = None,
        same_document: bool = False,
        evaluation: Evaluation | None = None,
    ) -> None:
        super().__init__()
        self.same_document = same_document
        self.evaluation = evaluation
        self.prompts: list[list[int]] = []
        self.model, self.tokenizer = initial_model(architecture, init_from, tokenizer)
        self.init_from = init_from
        # Taken before a mask row is added: data a checkpoint distilled from itself must match it.
        self.init_fingerprint = model_fingerprint(self.model) if init_from else None
        self.optimization = optimization or Optimization()
        if seq_len is not None:
            self.check_seq_len(seq_len)

    def check_seq_len(self, seq_len: int) -> None:
        if seq_len > self.model.config.max_seq_len:
            raise ValueError(
                f"seq_len {seq_len} is longer than the model's max_seq_len {self.model.config.max_seq_len}"
            )
        if self.block_size is not None and seq_len % self.block_size:
            raise ValueError(f"seq_len {seq_len} is not a multiple of block_size {self.block_size}")

    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is not None and getattr(datamodule, "seq_len", None):
            self.check_seq_len(datamodule.seq_len)
        made_by = getattr(datamodule, "target_identity", None)
        teacher = self.teacher()
        if made_by is not None and teacher is not None and made_by["fingerprint"] != teacher[1]:
            raise ValueError(
                f"the distilled data {datamodule.path} was made by the target {made_by['path']} "
                f"(fingerprint {made_by['fingerprint']}), but this module's teacher is {teacher[0]} "
                f"(fingerprint {teacher[1]}); distill again with this teacher"
            )

    def teacher(self) -> tuple[str, str] | None:
        """(path, fingerprint) of the model whose answers this module trains on: its own starting
        checkpoint (self-distillation); None from scratch."""
        return (self.init_from, self.init_fingerprint) if self.init_fingerprint else None

    def corrupt(self, batch: dict[str, Tensor], strategy: Corruption, epoch: int) -> Corrupted:
        """`strategy`'s corruption of the batch, seeded by (self.seed, sample index, epoch), only the
        batch's `loss_mask` positions (answers of distilled data) eligible when it has one."""
        mask_id = self.model.config.mask_token_id
        tokens, index, scored = batch["tokens"], batch["index"], batch.get("loss_mask")
        return strategy(tokens, index, epoch, self.block_size, mask_id, self.seed, scored)

    def doc_ids(self, batch: dict[str, Tensor]) -> Tensor | None:
        """The batch's per-token document ids when attention stays within documents, else None."""
        return batch["doc_ids"] if self.same_document else None

    def configure_model(self) -> None:
        """Under ModelParallelStrategy (dlm.training.ShardedStrategy): shard the network with FSDP2
        over the data-parallel mesh, in the trainer's precision. Once: fit then test reuse it."""
        mesh = self._device_mesh
        if mesh is None or is_sharded(self.model):
            return
        strategy = self.trainer.strategy
        checkpointing = getattr(strategy, "activation_checkpointing", False)
        parallelize(self.model, data_parallel_mesh(mesh), str(self.trainer.precision), checkpointing)
        # Every rank built or loaded the whole model before sharding it: say what that cost here.
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
        log.info(
            f"rank {self.global_rank}: model sharded over {mesh.size()} processes; peak host memory "
            f"so far {peak:.0f} MiB (init_from loads the whole model on every rank)"
        )

    def configure_optimizers(self) -> dict:
        return configure(self.model, self.optimization, int(self.trainer.estimated_stepping_batches))

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["dlm"] = checkpoint_record(self.model, self.tokenizer)
        checkpoint["dlm"]["training"] = training_record(self).to_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        source = self._trainer.ckpt_path if self._trainer is not None else None
        check_same_model(checkpoint, self.model.config, str(source or "the checkpoint"))

    def log_lr(self) -> None:
        optimizers = self.trainer.optimizers if self._trainer is not None else []
        if optimizers:
            self.log("train/lr", optimizers[0].param_groups[0]["lr"], on_step=True, on_epoch=False)

    # -- decoding at test ----------------------------------------------------------------------
    @property
    def sharded(self) -> bool:
        trainer = self._trainer
        return trainer is not None and isinstance(trainer.strategy, (FSDPStrategy, ModelParallelStrategy))

    def check_evaluation(self, model: nn.Module, drafter: nn.Module | None = None) -> None:
        """Fail now, not after training, when a decoder cannot run on `model` (it decodes with
        `drafter` where it needs one); warn when its draft block is not training's. Call it once the
        model, its mask token and its TrainingRecord exist."""
        if self.evaluation is not None:
            self.evaluation.check(model, drafter)

    def collect_prompts(self, batch: dict[str, Tensor]) -> None:
        """Keep test samples' prompts for decoding until `evaluation.prompts` are held: the first
        `evaluation.prompt_tokens` tokens of packed text, or, for distilled data (a `loss_mask` on
        the answers), each row's whole prompt without padding and answer (the held-out tasks as the
        model is asked them). None under FSDP (decoders need the whole model)."""
        evaluation = self.evaluation
        if evaluation is None or self.sharded or len(self.prompts) >= evaluation.prompts:
            return
        need = evaluation.prompts - len(self.prompts)
        if "loss_mask" not in batch:
            self.prompts += batch["tokens"][:need, : evaluation.prompt_tokens].tolist()
            return
        # the prompt is the text before the answer: doc 0 (padding has its own docs), not scored
        asked = (batch["doc_ids"] == 0) & ~batch["loss_mask"]
        self.prompts += [row[keep].tolist() for row, keep in zip(batch["tokens"][:need], asked[:need])]

    def on_test_start(self) -> None:
        if self.evaluation is not None:
            self.warn_if_sharded("decoders")

    def warn_if_sharded(self, what: str) -> None:
        if self.sharded:
            rank_zero_warn(
                f"{what} need the unsharded model and are skipped under FSDP; run `dlm test` with "
                "--trainer.strategy auto --trainer.devices 1 to get them"
            )

    evaluation_report: dict[str, Any] | None = None
    """The JSON-able report of the last evaluate() on global rank zero (dlm.core.stats.
    EvaluationResult.report: title, settings, baseline, metrics by decoder); None before."""

    def evaluate(
        self, model: nn.Module, drafter: nn.Module | None = None, reference: nn.Module | None = None
    ) -> dict[str, float]:
        """The evaluation's numbers on the collected prompts as "test/<key>", then the prompts are
        dropped; empty without an evaluation or prompts. Every process decodes its own prompts;
        global rank zero writes the table, the report and the plot to default_root_dir and keeps
        the report as `evaluation_report`."""
        if self.evaluation is None or not self.prompts:
            return {}
        zero = self.trainer.is_global_zero
        result = self.evaluation.run(
            model,
            self.prompts,
            drafter=drafter,
            reference=reference,
            directory=Path(self.trainer.default_root_dir) if zero else None,
            progress=bool(zero and self.trainer.progress_bar_callback),
        )
        self.prompts = []
        if zero:
            self.evaluation_report = result.report
        return {f"test/{key}": value for key, value in result.metrics.items()}
