"""AdamW with linear warmup and cosine decay, configured by one dataclass."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class Optimization:
    lr: float = 3e-4
    """Peak learning rate."""
    weight_decay: float = 0.1
    """AdamW weight decay, applied to matrices only (not norms or biases)."""
    betas: tuple[float, float] = (0.9, 0.95)
    """AdamW betas."""
    warmup_steps: int = 100
    """Linear warmup from 0 to lr."""
    min_lr_ratio: float = 0.1
    """The cosine decays to lr * min_lr_ratio at the last step."""
    total_steps: int | None = None
    """Length of the schedule; None means the trainer's estimate (max_steps, or epochs x batches)."""

    def __post_init__(self) -> None:
        checks = {
            "lr": (self.lr, self.lr > 0, "a positive number"),
            "weight_decay": (self.weight_decay, self.weight_decay >= 0, ">= 0"),
            "betas": (self.betas, all(0 <= b < 1 for b in self.betas), "two numbers in [0, 1)"),
            "warmup_steps": (self.warmup_steps, self.warmup_steps >= 0, ">= 0"),
            "min_lr_ratio": (self.min_lr_ratio, 0 <= self.min_lr_ratio <= 1, "in [0, 1]"),
            "total_steps": (
                self.total_steps,
                self.total_steps is None or self.total_steps > 0,
                "None or > 0",
            ),
        }
        for name, (value, ok, expected) in checks.items():
            if not ok:
                raise ValueError(f"optimization.{name}={value!r} must be {expected}")


def lr_factor(step: int, warmup: int, total: int, min_ratio: float) -> float:
    """Multiplier of the peak learning rate at `step`."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def configure(model: nn.Module, opt: Optimization, total_steps: int) -> dict:
    """The optimizer and per-step scheduler dict Lightning's configure_optimizers returns."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    rest = [p for p in params if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": opt.weight_decay}, {"params": rest, "weight_decay": 0.0}],
        lr=opt.lr,
        betas=opt.betas,
    )
    total = opt.total_steps or total_steps
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, opt.warmup_steps, total, opt.min_lr_ratio)
    )
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
