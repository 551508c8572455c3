"""Whole draft blocks mixed into another corruption: the self-speculation setting in training."""

from __future__ import annotations

import torch
from torch import Tensor

from dlm.core.masking.base import Corruption
from dlm.core.masking.position_dependent import PositionDependent


class WholeBlocks(Corruption):
    """Each block is, with probability `fraction`, a whole draft block (every position but the
    anchor masked, weight 1), else drawn by `base`.

    A whole block is exactly the draft block `[t, MASK x (B-1)]` that self-speculation drafts and
    verifies left to right; diffusion decoding needs the partly masked blocks of `base` too, so the
    mix is a parameter. Both draws come from the sample's generator, so the mix stays a function of
    (seed, sample index, epoch).

    Args:
        fraction: Probability in [0, 1] that a block is masked whole.
        base: The corruption of the other blocks; default PositionDependent.
    """

    def __init__(self, fraction: float = 0.5, base: Corruption | None = None) -> None:
        if isinstance(fraction, bool) or not isinstance(fraction, int | float) or not 0.0 <= fraction <= 1.0:
            raise ValueError(f"fraction must lie in [0, 1], got {fraction!r}")
        self.fraction = float(fraction)
        self.base = base or PositionDependent()

    def draw(
        self, generator: torch.Generator, n_blocks: int, block_size: int, index: int, epoch: int, seed: int
    ) -> tuple[Tensor, Tensor]:
        whole = torch.rand(n_blocks, generator=generator) < self.fraction
        masked, weight = self.base.draw(generator, n_blocks, block_size, index, epoch, seed)
        weight = weight.float().reshape(n_blocks, -1).expand(n_blocks, block_size - 1).clone()
        weight[whole] = 1.0
        return masked | whole.unsqueeze(1), weight
