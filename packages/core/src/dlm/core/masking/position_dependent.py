"""Position-dependent masking (Efficient-DLM; the scheme of the public Nemotron code) under the
anchor rule."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from dlm.core.masking.base import Corruption, check_eps, gumbel, top_k_rows


class PositionDependent(Corruption):
    """Per block m ~ U(eps, 1); exactly k = max(1, round(m (B-1))) of the positions 1..B-1 are
    masked, chosen by Gumbel top-k over log w_i = lambda (1 - m) i with lambda = ln 2 / (h B);
    weight 1/m.

    Small m masks mostly the late positions of the block, as left-to-right decoding leaves them;
    m -> 1 is uniform. h (half_life) is the fraction of the block over which a position's weight
    doubles (0.25: the last position is 16 times as likely as the first when m is near 0).
    """

    def __init__(self, eps: float = 1e-3, half_life: float = 0.25) -> None:
        check_eps(eps)
        if half_life <= 0:
            raise ValueError(f"half_life must be positive, got {half_life!r}")
        self.eps, self.half_life = eps, half_life

    def log_weights(self, m: Tensor, block_size: int) -> Tensor:
        """log w_i for positions i = 1..B-1 of each block, (n_blocks, B-1)."""
        rate = math.log(2.0) / (self.half_life * block_size)
        i = torch.arange(1, block_size, dtype=torch.float32)
        return rate * (1.0 - m).unsqueeze(1) * i

    def select(self, generator: torch.Generator, m: Tensor, block_size: int) -> Tensor:
        """Which of positions 1..B-1 are masked in blocks whose ratio is m, (n_blocks, B-1) bool."""
        k = (m * (block_size - 1)).round().clamp(min=1).long()
        scores = self.log_weights(m, block_size) + gumbel(generator, (m.shape[0], block_size - 1))
        return top_k_rows(scores, k)

    def draw(
        self, generator: torch.Generator, n_blocks: int, block_size: int, index: int, epoch: int, seed: int
    ) -> tuple[Tensor, Tensor]:
        m = self.eps + (1.0 - self.eps) * torch.rand(n_blocks, generator=generator)
        return self.select(generator, m, block_size), 1.0 / m
