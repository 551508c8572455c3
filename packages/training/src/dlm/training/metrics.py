"""Metrics of diffusion training: masked-token CE and accuracy by mask ratio, and weight drift."""

from __future__ import annotations

import re
from collections import defaultdict

import torch
from torch import Tensor, nn
from torchmetrics import Metric

from dlm.core.losses import MaskedDiffusionLoss, target_cross_entropy
from dlm.core.masking import Corrupted


class MaskedTokenMetrics(Metric):
    """Mean CE and accuracy of masked-token predictions, overall and by the mask ratio of the block
    each prediction comes from (`buckets` equal bins over (0, 1]); summed across processes."""

    full_state_update = False

    def __init__(self, buckets: int = 4) -> None:
        super().__init__()
        if buckets < 1:
            raise ValueError(f"buckets must be >= 1, got {buckets}")
        self.buckets = buckets
        for name in ("ce", "correct", "count"):
            self.add_state(name, default=torch.zeros(buckets, dtype=torch.float64), dist_reduce_fx="sum")

    def _apply(self, fn, exclude_state=""):
        # Module.to(dtype) also casts metric states (bf16-true converts the whole LightningModule);
        # sums over many predictions stay float64 (bf16 stops counting at 256).
        this = super()._apply(fn, exclude_state)
        for name in ("ce", "correct", "count"):
            setattr(this, name, getattr(this, name).double())
            this._defaults[name] = this._defaults[name].double()
        return this

    def update(self, ce: Tensor, correct: Tensor, ratio: Tensor) -> None:
        """Per prediction: its CE, whether the argmax was right, and its block's mask ratio."""
        bucket = (ratio * self.buckets).ceil().long().clamp(1, self.buckets) - 1
        self.ce.index_add_(0, bucket, ce.detach().double())
        self.correct.index_add_(0, bucket, correct.double())
        self.count.index_add_(0, bucket, torch.ones_like(ce, dtype=torch.float64))

    def compute(self) -> dict[str, Tensor]:
        total = self.count.sum().clamp(min=1)
        out = {"ce": self.ce.sum() / total, "acc": self.correct.sum() / total}
        if self.buckets > 1:
            for b in range(self.buckets):
                if self.count[b] > 0:
                    name = f"{b / self.buckets:.2f}-{(b + 1) / self.buckets:.2f}"
                    out[f"ce@{name}"] = self.ce[b] / self.count[b]
                    out[f"acc@{name}"] = self.correct[b] / self.count[b]
        return {k: v.float() for k, v in out.items()}


def block_ratios(corrupted: Tensor, block_size: int) -> Tensor:
    """(batch, L) the mask ratio of each position's block: masked positions / (B - 1)."""
    batch, length = corrupted.shape
    per_block = corrupted.view(batch, length // block_size, block_size).float().sum(-1) / (block_size - 1)
    return per_block.repeat_interleave(block_size, dim=1)


def masked_predictions(
    loss: MaskedDiffusionLoss,
    logits: Tensor,
    clean: Tensor,
    corrupted: Corrupted,
    block_size: int,
    token_shift: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    """(CE, correct, block mask ratio) of every masked position's prediction, what
    MaskedTokenMetrics.update takes: the corrupted positions only (no cross-block target),
    unweighted. `logits` (batch, L, vocab) are the noisy positions' under `loss`'s token shift."""
    t = loss.targets(corrupted.mask, corrupted.weights, block_size, token_shift, cross_block=False)
    ce = target_cross_entropy(logits, clean, t)
    correct = logits[t.rows, t.logit_positions].argmax(-1) == clean[t.rows, t.positions]
    ratio = block_ratios(corrupted.mask, block_size)[t.rows, t.positions]
    return ce, correct, ratio


def layer_type(name: str) -> str:
    """A parameter's name with the layer index removed: layers.3.attn.q.weight -> attn.q.weight."""
    return re.sub(r"^layers\.\d+\.", "", name).removesuffix(".weight")


@torch.no_grad()
def weight_drift(model: nn.Module, initial: nn.Module, skip_rows: tuple[int, ...] = ()) -> dict[str, float]:
    """||W - W0||_F / ||W0||_F per layer type, pooled over layers (the rows both embeddings share,
    minus `skip_rows`, e.g. a [MASK] row that was re-initialised on purpose)."""
    start = dict(initial.named_parameters())
    diff, base = defaultdict(float), defaultdict(float)
    for name, w in model.named_parameters():
        if name not in start:
            continue
        w0 = start[name].to(w.device, torch.float32)
        w = w.float()
        if w.shape != w0.shape or (skip_rows and w.dim() == 2 and name.startswith(("embed", "lm_head"))):
            rows = min(w.shape[0], w0.shape[0])
            keep = torch.ones(rows, dtype=torch.bool, device=w.device)
            keep[[r for r in skip_rows if r < rows]] = False
            w, w0 = w[:rows][keep], w0[:rows][keep]
        kind = layer_type(name)
        diff[kind] += (w - w0).pow(2).sum().item()
        base[kind] += w0.pow(2).sum().item()
    return {k: (diff[k] / base[k]) ** 0.5 if base[k] else float("nan") for k in sorted(diff)}
