"""Turning logits into tokens: greedy, temperature, top-k, top-p, and speculative acceptance.

Every decoder and every reference goes through these functions, so "never emit [MASK]" and the
acceptance rules live in one place. Probabilities are computed in float64.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class Sampler:
    """temperature 0 is greedy (argmax); otherwise softmax(logits / temperature), then top-k, then top-p
    (keep the smallest set of most likely tokens whose mass reaches top_p), renormalised."""

    temperature: float = 0.0
    top_k: int | None = None
    top_p: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.temperature, int | float) or self.temperature < 0:
            raise ValueError(f"temperature must be >= 0 (0 is greedy), got {self.temperature!r}")
        if self.top_k is not None and (not isinstance(self.top_k, int) or self.top_k <= 0):
            raise ValueError(f"top_k must be a positive integer or None, got {self.top_k!r}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1] or None, got {self.top_p!r}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def probs(self, logits: Tensor, mask_id: int | None) -> Tensor:
        """The sampling distribution over the last axis; greedy gives the one-hot argmax."""
        logits = without_mask(logits, mask_id)
        if self.greedy:
            return torch.nn.functional.one_hot(logits.argmax(-1), logits.shape[-1]).double()
        logits = logits / self.temperature
        if self.top_k is not None and self.top_k < logits.shape[-1]:
            kth = logits.topk(self.top_k, dim=-1).values[..., -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        p = logits.softmax(-1)
        if self.top_p is not None and self.top_p < 1:
            sorted_p, order = p.sort(-1, descending=True)
            # A token is dropped when the more likely ones already reach top_p (the first never is).
            surplus = (sorted_p.cumsum(-1) - sorted_p) >= self.top_p
            drop = torch.zeros_like(surplus).scatter(-1, order, surplus)
            p = p.masked_fill(drop, 0.0)
            p = p / p.sum(-1, keepdim=True)
        return p

    def pick(self, logits: Tensor, mask_id: int | None, generator: torch.Generator | None) -> Tensor:
        """One token per position of logits (..., vocab)."""
        if self.greedy:
            return without_mask(logits, mask_id).argmax(-1)
        return draw(self.probs(logits, mask_id), generator)


def without_mask(logits: Tensor, mask_id: int | None) -> Tensor:
    """float64 logits with the [MASK] token made impossible."""
    logits = logits.double()
    if mask_id is not None:
        logits = logits.clone()
        logits[..., mask_id] = float("-inf")
    return logits


def draw(probs: Tensor, generator: torch.Generator | None) -> Tensor:
    """One sample per row of probs (..., vocab)."""
    flat = probs.reshape(-1, probs.shape[-1])
    if not flat.shape[0]:
        return torch.zeros(probs.shape[:-1], dtype=torch.long)
    return torch.multinomial(flat, 1, generator=generator).view(probs.shape[:-1])


def accept_greedy(choices: list[int], drafts: list[int]) -> tuple[int, int]:
    """Longest prefix of drafts equal to the verifier's choices (choices[i] is its token for draft slot
    i; len(choices) = len(drafts) + 1), and the verifier's token after it (the bonus)."""
    n = 0
    while n < len(drafts) and drafts[n] == choices[n]:
        n += 1
    return n, choices[n]


def acceptance_ratio(p_draft: Tensor, q_draft: Tensor) -> Tensor:
    """min(1, p(d) / q(d)): the probability of keeping a draft d sampled from q when the target is p."""
    return (p_draft / q_draft).clamp(max=1.0)


def residual(p: Tensor, q: Tensor) -> Tensor:
    """norm(max(0, p - q)): what to sample after a rejection so the output is distributed as p."""
    r = (p - q).clamp(min=0.0)
    total = r.sum()
    # p == q (up to rounding) rejects with probability 0; fall back to p rather than divide by 0.
    return r / total if total > 0 else p


def accept_sampled(
    p: Tensor, q: Tensor, drafts: list[int], generator: torch.Generator | None
) -> tuple[int, int]:
    """Lossless speculative sampling (Leviathan et al. 2023; Chen et al. 2023).

    p: (m + 1, vocab) target distributions for the m draft slots and the bonus slot; q: (m, vocab)
    the distributions the drafts were sampled from. Draft i is kept with probability min(1, p/q);
    at the first rejection the token is resampled from norm(max(0, p - q)); after m acceptances the
    bonus is sampled from p[m]. Always draws m uniforms first, so the draws do not depend on the outcome.
    """
    m = len(drafts)
    u = torch.rand(m, generator=generator, dtype=torch.float64)
    index, d = torch.arange(m), torch.tensor(drafts, dtype=torch.long)
    ratio = acceptance_ratio(p[index, d], q[index, d])
    n = 0
    while n < m and u[n] < ratio[n]:
        n += 1
    target = p[m] if n == m else residual(p[n], q[n])
    return n, int(draw(target, generator))
