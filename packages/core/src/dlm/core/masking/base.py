"""What every corruption strategy shares: the call signature, per-sample seeding, the anchor rule.

A strategy decides, block by block, which positions of a clean sequence become [MASK] and with what
loss weight. The base class owns everything else:

- **Per-sample seeding.** Every draw for a sample comes from a `torch.Generator` seeded by
  (seed, global sample index, epoch), so a sample's corruption does not depend on which other
  samples share its batch, on the number of processes, or on where a run was resumed.
- **The anchor rule (our formulation).** The first position of every block is never corrupted; the
  strategy acts on the other B-1 positions. A training block of size B then shows the model the
  context of a draft block `[t, MASK x K]` with K = B-1, where t is the last committed token.
- **Weights** are returned per position: at corrupted positions the inverse of the probability
  that the strategy masks that position at the block's noise level (1/t for `Uniform`, 1/pi_i(m)
  for `PositionDependent`; see `position_dependent.py` for why) or 1, and 0 elsewhere.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

_MASK64 = (1 << 64) - 1


class Corrupted(NamedTuple):
    tokens: Tensor
    """(batch, L) the input with corrupted positions replaced by the mask id."""
    mask: Tensor
    """(batch, L) bool, True where a position was corrupted."""
    weights: Tensor
    """(batch, L) float loss weight of each corrupted position (0 elsewhere)."""


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def sample_seed(*values: int) -> int:
    """A well-mixed 63-bit seed from integers such as (seed, sample index, epoch)."""
    h = 0
    for v in values:
        h = _splitmix64(h ^ (int(v) & _MASK64))
    return h >> 1


def sample_generator(*values: int) -> torch.Generator:
    """A CPU generator seeded from `values` alone (the global RNG state plays no part)."""
    return torch.Generator().manual_seed(sample_seed(*values))


class Corruption:
    """Base class: subclasses implement `draw` for one sample; `__call__` corrupts a batch."""

    def draw(
        self, generator: torch.Generator, n_blocks: int, block_size: int, index: int, epoch: int, seed: int
    ) -> tuple[Tensor, Tensor]:
        """(masked (n_blocks, block_size - 1) bool over each block's non-anchor positions,
        weight: (n_blocks,) float, one per block, or (n_blocks, block_size - 1), one per position)
        for one sample; draw only from `generator` (or from generators seeded by the arguments,
        e.g. antithetic pairs)."""
        raise NotImplementedError

    def __call__(
        self,
        tokens: Tensor,
        sample_index: Tensor,
        epoch: int,
        block_size: int,
        mask_id: int,
        seed: int,
        loss_mask: Tensor | None = None,
    ) -> Corrupted:
        """Corrupt `tokens` (batch, L); `sample_index` (batch,) holds each row's global sample index.
        With `loss_mask` (batch, L) only marked positions may be corrupted (the prompt of
        self-distilled data stays clean); the draws are the same, so unmarked positions simply drop
        out."""
        n_blocks = check_blocks(tokens, sample_index, block_size)
        masks, weights = [], []
        for index in sample_index.tolist():
            generator = sample_generator(seed, index, epoch)
            masked, weight = self.draw(generator, n_blocks, block_size, index, epoch, seed)
            anchor = torch.zeros(n_blocks, 1, dtype=torch.bool)
            masks.append(torch.cat([anchor, masked], dim=1).reshape(-1))
            weight = weight.float().reshape(n_blocks, -1).expand(n_blocks, block_size - 1)
            weights.append(torch.cat([torch.zeros(n_blocks, 1), weight], dim=1).reshape(-1))
        mask = torch.stack(masks).to(tokens.device)
        if loss_mask is not None:
            mask &= loss_mask
        weight = torch.stack(weights).to(tokens.device) * mask
        return Corrupted(tokens.masked_fill(mask, mask_id), mask, weight)


def check_blocks(tokens: Tensor, sample_index: Tensor, block_size: int) -> int:
    """The number of blocks per row, after checking the shapes agree with the block size."""
    if tokens.dim() != 2:
        raise ValueError(f"tokens must be (batch, length), got shape {tuple(tokens.shape)}")
    if sample_index.shape != tokens.shape[:1]:
        raise ValueError(
            f"sample_index must be ({tokens.shape[0]},) (one global index per row), got {tuple(sample_index.shape)}"
        )
    if not isinstance(block_size, int) or block_size < 2:
        raise ValueError(
            f"block_size must be an integer >= 2 (an anchor plus at least one maskable position), got {block_size!r}"
        )
    if tokens.shape[1] % block_size:
        raise ValueError(f"sequence length {tokens.shape[1]} is not a multiple of block_size {block_size}")
    return tokens.shape[1] // block_size


def check_eps(eps: float) -> None:
    if not 0.0 < eps < 1.0:
        raise ValueError(f"eps must lie in (0, 1), got {eps!r}")


def gumbel(generator: torch.Generator, shape: tuple[int, ...]) -> Tensor:
    u = torch.rand(shape, generator=generator, dtype=torch.float32).clamp_(min=1e-20, max=1 - 1e-7)
    return -torch.log(-torch.log(u))


def top_k_rows(scores: Tensor, k: Tensor) -> Tensor:
    """Bool mask of the k[r] largest entries of each row r of `scores`."""
    rank = scores.argsort(dim=1, descending=True).argsort(dim=1)
    return rank < k.unsqueeze(1)
