"""Inclusion probabilities of Gumbel top-k: P(position i is among the k chosen), computed exactly
up to a quadrature error far below float32 resolution.

Gumbel top-k over scores log w_i + G_i is Plackett-Luce sampling of k positions without
replacement. Equivalently (the exponential race) each position draws an arrival time
E_i = exp(-(log w_i + G_i)) ~ Exp(w_i), independently, and the k earliest arrivals are chosen. So

    pi_i = P(i chosen) = integral_0^inf  w_i exp(-w_i x) P(fewer than k others arrive before x) dx,

and given x the others arrive before it independently with probability q_j(x) = 1 - exp(-w_j x):
the count is Poisson-binomial. The count without i comes from a prefix and a suffix recursion over
j (every position's leave-one-out count at the cost of two passes), truncated at k - 1 arrivals.
The integral runs over y = log x on a uniform grid (trapezoid rule): the integrand is smooth and
decays exponentially at both ends, so the rule converges geometrically in the step; the grid spans
from where w_max x = 1e-13 to where w_min x = 50, and a step of 0.2 gives errors below 1e-12
(checked against the enumeration of every ordering in the tests). Sum_i pi_i = k.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

_STEP = 0.3  # in log x
_HEAD = 1e-8  # below x = _HEAD (w_max = 1) nobody else can arrive first, to within n _HEAD^2
_HIGH = math.log(50.0)  # the grid ends where w_min x = 50


def top_k_inclusion(log_w: Tensor, k: Tensor) -> Tensor:
    """pi (rows, n) float64: the probability that Gumbel top-k of row r over log weights `log_w`
    (rows, n) picks each position, with k[r] positions picked (1 <= k[r] <= n)."""
    if log_w.dim() != 2 or k.shape != log_w.shape[:1]:
        raise ValueError(
            f"log_w must be (rows, n) and k (rows,), got {tuple(log_w.shape)} and {tuple(k.shape)}"
        )
    n = log_w.shape[1]
    if k.numel() and not bool(((k >= 1) & (k <= n)).all()):
        raise ValueError(f"every k must lie in [1, {n}], got {k.tolist()}")
    log_w = log_w.double()
    log_w = log_w - log_w.amax(1, keepdim=True)  # w_max = 1 in every row
    span = float(-log_w.amin()) if log_w.numel() else 0.0
    y = torch.arange(math.log(_HEAD), _HIGH + span + _STEP, _STEP, dtype=torch.float64)
    x = y.exp()  # (P,)
    w = log_w.exp().T  # (n, rows)
    wx = w.unsqueeze(-1) * x  # (n, rows, P)
    q = -torch.expm1(-wx)  # P(E_j < x)
    fewer = fewer_than_k_others(q.reshape(n, -1), k.repeat_interleave(x.numel()))
    # integrand in y: density of E_i at x times dx/dy = x; trapezoid weights (half at the ends)
    integrand = wx * torch.exp(-wx) * fewer.view_as(wx)
    trapezoid = torch.full_like(x, _STEP)
    trapezoid[[0, -1]] = _STEP / 2
    head = -torch.expm1(-w * _HEAD)  # P(E_i < _HEAD): i is then among the first k
    return (head + integrand @ trapezoid).T


def fewer_than_k_others(q: Tensor, k: Tensor) -> Tensor:
    """P(fewer than k[c] of the positions j != i arrive first), (n, columns): q (n, columns) holds
    each position's arrival probability in each column (a row of log weights at one point x)."""
    n, columns = q.shape
    width = int(k.max())  # counts 0..width-1 are all that matter
    # before[i, c]: P(c arrivals among j < i); after[i, c]: the same among j > i
    before = torch.empty(n, width, columns, dtype=q.dtype)
    after = torch.empty(n, width, columns, dtype=q.dtype)
    for edge in (before[0], after[n - 1]):
        edge.zero_()
        edge[0] = 1.0
    for i in range(1, n):
        arrival(before[i - 1], q[i - 1], out=before[i])
        arrival(after[n - i], q[n - i], out=after[n - 1 - i])
    for c in range(1, width):  # P(at most c arrivals among j > i), in place
        after[:, c] += after[:, c - 1]
    fewer = torch.zeros(n, columns, dtype=q.dtype)
    for a in range(width):  # a arrivals before i, at most k - 1 - a after it
        rest = k - 1 - a
        valid = rest >= 0
        at_most = after.gather(1, rest.clamp(min=0).expand(n, 1, columns)).squeeze(1)
        fewer += before[:, a] * at_most * valid
    return fewer


def arrival(count: Tensor, qj: Tensor, out: Tensor) -> None:
    """out = the count distribution (width, columns) after one more position arrives with
    probability qj (columns,), truncated at width - 1."""
    torch.mul(count, 1 - qj, out=out)
    out[1:] += count[:-1] * qj
