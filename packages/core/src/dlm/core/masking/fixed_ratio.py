"""A fixed mask ratio, for evaluation (held-out masked-token CE at ratio r)."""

from __future__ import annotations

import torch
from torch import Tensor

from dlm.core.masking.base import Corruption, top_k_rows


class FixedRatio(Corruption):
    """In every block exactly k = max(1, round(ratio (B-1))) of the positions 1..B-1 are masked,
    chosen uniformly at random; weight 1."""

    def __init__(self, ratio: float) -> None:
        if not 0.0 < ratio <= 1.0:
            raise ValueError(f"ratio must lie in (0, 1], got {ratio!r}")
        self.ratio = ratio

    def draw(
        self, generator: torch.Generator, n_blocks: int, block_size: int, index: int, epoch: int, seed: int
    ) -> tuple[Tensor, Tensor]:
        k = max(1, round(self.ratio * (block_size - 1)))
        scores = torch.rand(n_blocks, block_size - 1, generator=generator, dtype=torch.float32)
        return top_k_rows(scores, torch.full((n_blocks,), k)), torch.ones(n_blocks)
