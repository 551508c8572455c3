"""Position-dependent masking (Efficient-DLM; the scheme of the public Nemotron code) under the
anchor rule, with the loss weight that makes its weighted CE an unbiased estimate.

**What the weighted loss estimates (our derivation).** A block has n = B-1 maskable positions. A
strategy draws a noise level s with density rho on [eps, 1], then a mask M of positions. For i in M
let l_i(M) be the CE of position i when the positions M are masked (it depends on the whole mask:
the rest of the block is its context). A block contributes sum_(i in M) w_i(s) l_i(M) to the loss.
With pi_i(s) = P(i in M | s), the inclusion probability, the Horvitz-Thompson weight
w_i(s) = 1 / pi_i(s) gives

    E[ sum_(i in M) l_i(M) / pi_i(s) ]  =  integral rho(s) sum_(i=1..n) E[ l_i(M) | i in M, s ] ds   (*)

(condition on s: sum_i P(i in M | s) E[l_i | i in M, s] / pi_i(s)). (*) is the sum over positions
of each position's CE in the contexts the strategy shows it, integrated over the noise schedule:
every position counts once per noise level, whatever the strategy's masking rate there.

- `Uniform` masks i.i.d. with probability t, so pi_i(t) = t and its 1/t weight is this weight.
  With t ~ U(0, 1), (*) is the MDLM negative ELBO of the block (linear schedule: the ELBO weight
  -alpha'_t / (1 - alpha_t) is 1/t), equivalently sum_(k=1..n) E_(|M| = k, uniform)[ mean_(i in M)
  l_i(M) ] (integrate C(n, k) t^(k-1) (1-t)^(n-k) = 1/k): each of the n any-order unmasking steps
  once. With eps > 0 it is that integral over t in [eps, 1] divided by 1 - eps.
- `PositionDependent` masks exactly k(m) positions by Gumbel top-k over position weights, so
  pi_i(m) is the Plackett-Luce inclusion probability (computed exactly in `inclusion.py`), and the
  weight is 1/pi_i(m). (*) is then the same sum of per-position CEs, in the contexts this sampler
  shows (late positions masked at small m). It is not an ELBO (given |M| = k the masks are not
  uniform), but it has the ELBO's form and scale (about n x a CE per block), so the two strategies'
  losses are comparable. Without tilt (half_life -> inf) pi_i = k/n and (*) is the any-order sum
  above with the k = 1 step counted 1.5 times and the k = n step 0.5 times (the rounding of k).

The weight 1/m used before is not this: with k = max(1, round(m (B-1))) clamped at 1, a block at
m = 1e-3 still masks one position and weighed it 1000, where 1/pi_i is at most ~1/min_i softmax
(~25 for B = 8). Tests enumerate every mask for B = 4 and check (*) exactly for both strategies.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from dlm.core.masking.base import Corruption, check_eps, gumbel, top_k_rows
from dlm.core.masking.inclusion import top_k_inclusion


class PositionDependent(Corruption):
    """Per block m ~ U(eps, 1); exactly k = max(1, round(m (B-1))) of the positions 1..B-1 are
    masked, chosen by Gumbel top-k over log w_i = lambda (1 - m) i with lambda = ln 2 / (h B);
    the weight of masked position i is 1 / pi_i(m), its probability of being masked at that m.

    Small m masks mostly the late positions of the block, as left-to-right decoding leaves them;
    m -> 1 is uniform. h (half_life) is the fraction of the block over which a position's weight
    doubles (0.25: at m near 0 the last position is 2^((B-2)/(h B)) times as likely as the first,
    2^3.5 ~ 11x for B = 16).
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

    def masked_count(self, m: Tensor, block_size: int) -> Tensor:
        """k = max(1, round(m (B-1))) per block, (n_blocks,) long."""
        return (m * (block_size - 1)).round().clamp(min=1).long()

    def select(self, generator: torch.Generator, m: Tensor, block_size: int) -> Tensor:
        """Which of positions 1..B-1 are masked in blocks whose ratio is m, (n_blocks, B-1) bool."""
        scores = self.log_weights(m, block_size) + gumbel(generator, (m.shape[0], block_size - 1))
        return top_k_rows(scores, self.masked_count(m, block_size))

    def inclusion(self, m: Tensor, block_size: int) -> Tensor:
        """pi_i(m): the probability that `select` masks position i = 1..B-1, (n_blocks, B-1) float64."""
        return top_k_inclusion(self.log_weights(m.double(), block_size), self.masked_count(m, block_size))

    def draw(
        self, generator: torch.Generator, n_blocks: int, block_size: int, index: int, epoch: int, seed: int
    ) -> tuple[Tensor, Tensor]:
        m = self.eps + (1.0 - self.eps) * torch.rand(n_blocks, generator=generator, dtype=torch.float32)
        return self.select(generator, m, block_size), 1.0 / self.inclusion(m, block_size)
