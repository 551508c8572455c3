"""Uniform masking (MDLM / LLaDA) under the anchor rule."""

from __future__ import annotations

import torch
from torch import Tensor

from dlm.core.masking.base import Corruption, check_eps, sample_generator

_PAIR_STREAM = 0x5A17  # separates the antithetic pair's generator from any sample's own


class Uniform(Corruption):
    """Per block (or per sequence) t ~ U(eps, 1); each maskable position is masked i.i.d. with
    probability t; weight 1/t (the loss can switch weighting off).

    antithetic: samples 2n and 2n+1 form a pair whose rates are u and 1-u (before the map into
    [eps, 1]), which lowers the variance of the loss across a batch. The pair is formed from global
    sample indices, not batch positions, so it is the same on any number of processes.
    """

    def __init__(self, eps: float = 1e-3, per_sequence: bool = False, antithetic: bool = False) -> None:
        check_eps(eps)
        self.eps, self.per_sequence, self.antithetic = eps, per_sequence, antithetic

    def draw(
        self, generator: torch.Generator, n_blocks: int, block_size: int, index: int, epoch: int, seed: int
    ) -> tuple[Tensor, Tensor]:
        n_rates = 1 if self.per_sequence else n_blocks
        if self.antithetic:
            u = torch.rand(
                n_rates,
                generator=sample_generator(seed, index // 2, epoch, _PAIR_STREAM),
                dtype=torch.float32,
            )
            u = 1.0 - u if index % 2 else u
        else:
            u = torch.rand(n_rates, generator=generator, dtype=torch.float32)
        t = (self.eps + (1.0 - self.eps) * u).expand(n_blocks)
        # float32 draws whatever torch's default dtype (bf16-true sets it to bf16 around each step).
        noise = torch.rand(n_blocks, block_size - 1, generator=generator, dtype=torch.float32)
        return noise < t.unsqueeze(1), 1.0 / t
