"""TriMode (Nemotron "sbd"): the BlockDiffusion mask over [x_t ; x_0] with a token-causal clean half,
so one forward gives diffusion logits on the noisy half and autoregressive logits on the clean half.

With j = i mod L as in block_diffusion.py: a noisy block sees itself and the clean blocks before it;
a clean query sees the clean keys at or before it.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from dlm.attention.masks.block_diffusion import BlockDiffusion


@dataclass(frozen=True)
class TriMode(BlockDiffusion):
    # A subclass, so the kernels that run BlockDiffusion's layout (split) take it too.
    def clean_allowed(self, jq: Tensor, jk: Tensor) -> Tensor:
        return jk <= jq
