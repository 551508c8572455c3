"""Stop (or skip the batch) on a non-finite loss or gradient, before the optimizer applies it."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import rank_zero_warn


class NonFiniteGuard(pl.Callback):
    """Checks every optimizer step's loss and gradients; a NaN or inf never reaches the weights.

    The check runs after backward (gradients are already all-reduced under DDP) and before the
    optimizer step; every process takes the same decision. By default training stops with a
    FloatingPointError naming the step and the global sample indices of the batch (all
    processes, all accumulated micro-batches), which `dlm` prints as one line; the last checkpoint
    holds the weights before the bad step. With `skip`, the batch's gradients are dropped instead
    (the optimizer leaves weights and moments alone; the LR schedule still advances), a warning
    names the batch, and train/skipped_batches counts them. The `dlm` CLI adds a stopping guard
    to every run that configures none.

    Args:
        skip: Skip non-finite batches instead of stopping.
        max_skips: Stop anyway after this many skipped batches (a diverged run would skip forever);
            None means no limit.
    """

    def __init__(self, skip: bool = False, max_skips: int | None = 100) -> None:
        if max_skips is not None and max_skips < 0:
            raise ValueError(f"max_skips must be None or >= 0, got {max_skips}")
        self.skip, self.max_skips = skip, max_skips
        self.skipped = 0
        self.indices: list[torch.Tensor] = []
        self.finite_loss = True
        self.stepped = True

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self.stepped:  # a new optimizer step begins: forget the previous step's micro-batches
            self.indices, self.finite_loss, self.stepped = [], True, False
        if isinstance(batch, dict) and "index" in batch:
            self.indices.append(torch.as_tensor(batch["index"]).reshape(-1))

    def on_before_backward(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss: torch.Tensor
    ) -> None:
        self.finite_loss = self.finite_loss and bool(torch.isfinite(loss.detach()).all())

    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        self.stepped = True
        finite = self.finite_loss and gradients_finite(trainer, optimizer)
        if not trainer.strategy.reduce_boolean_decision(not finite, all=False):
            return
        problem = (
            f"non-finite loss or gradient at step {trainer.global_step} (epoch {trainer.current_epoch}), "
            f"batch samples {self.global_indices(trainer, pl_module)}"
        )
        if not self.skip or (self.max_skips is not None and self.skipped >= self.max_skips):
            reason = f"; {self.skipped} batches were skipped before" if self.skip else ""
            raise FloatingPointError(
                f"{problem}{reason}; training stopped before the optimizer applied it (the last checkpoint "
                "is intact). To skip such batches, add dlm.training.NonFiniteGuard with skip: true to "
                "trainer.callbacks"
            )
        optimizer.zero_grad(set_to_none=True)
        self.skipped += 1
        rank_zero_warn(f"skipped the batch: {problem}")
        pl_module.log("train/skipped_batches", float(self.skipped), on_step=True, on_epoch=False)

    def global_indices(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> list[int]:
        """The sample indices of this step on every process (a collective: all processes call it)."""
        if not self.indices:
            return []
        local = torch.cat(self.indices).to(pl_module.device)
        return sorted(trainer.strategy.all_gather(local).reshape(-1).tolist())

    def state_dict(self) -> dict[str, Any]:
        return {"skipped": self.skipped}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.skipped = state_dict["skipped"]


def gradients_finite(trainer: pl.Trainer, optimizer: torch.optim.Optimizer) -> bool:
    """Whether this process's gradients are finite. Under fp16 loss scaling the scaler already
    skips steps with overflowing gradients, so only the loss is checked there."""
    if getattr(trainer.precision_plugin, "scaler", None) is not None:
        return True
    grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    return not grads or bool(torch.isfinite(torch.nn.utils.get_total_norm(grads)))
