"""Offline draft accuracy by position, the drafter's validation metric (a torchmetrics metric)."""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric


class DraftAccuracy(Metric):
    """Per draft position: how often the drafter's argmax equals the target's token, unconditionally
    and given all earlier drafts right (what greedy verification would accept); and the offline
    accepted length, 1 + the number of leading right drafts (the bonus token included, as tau)."""

    full_state_update = False

    def __init__(self, k: int) -> None:
        super().__init__()
        self.k = k
        for name in ("right", "reached", "accepted_given_reached"):
            self.add_state(name, default=torch.zeros(k, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("blocks", default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, logits: Tensor, targets: Tensor) -> None:
        right = (logits.argmax(-1) == targets).double()  # (N, K)
        leading = right.cumprod(-1)
        reached = torch.cat([torch.ones_like(leading[:, :1]), leading[:, :-1]], -1)
        self.right += right.sum(0)
        self.reached += reached.sum(0)
        self.accepted_given_reached += leading.sum(0)
        self.blocks += right.shape[0]

    def compute(self) -> dict[str, Tensor]:
        blocks = self.blocks.clamp(min=1)
        out = {"tau": 1 + self.accepted_given_reached.sum() / blocks}
        for i in range(self.k):
            out[f"acc@{i + 1}"] = self.right[i] / blocks
            out[f"accept@{i + 1}"] = self.accepted_given_reached[i] / self.reached[i].clamp(min=1)
        return {name: value.float() for name, value in out.items()}
