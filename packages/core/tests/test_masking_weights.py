"""The corruption weights make the weighted CE an unbiased estimate of the quantity they claim:
checked exactly, by enumerating every mask of a block of B = 4 (n = 3 maskable positions) with its
probability under the sampler (Plackett-Luce for Gumbel top-k, Bernoulli for Uniform).

The quantity (see dlm/core/masking/position_dependent.py): given the noise level s,
sum_i E[l_i(M) | i in M, s], for an arbitrary per-(position, mask) CE l_i(M)."""

import itertools
import math

import numpy
import pytest
import torch

from dlm.core.masking import PositionDependent, Uniform, sample_generator
from dlm.core.masking.inclusion import top_k_inclusion

B, N = 4, 3
MASKS = [frozenset(c) for k in range(N + 1) for c in itertools.combinations(range(N), k)]
PAIRS = [(i, m) for m in MASKS for i in sorted(m)]
# an arbitrary CE for every (position, mask) pair: it depends on the context, as a model's does
CE = dict(zip(PAIRS, (0.5 + torch.rand(len(PAIRS), generator=torch.Generator().manual_seed(0))).tolist()))


def plackett_luce_sets(log_w: list[float], k: int) -> dict[frozenset, float]:
    """P(the first k draws without replacement, probability proportional to w, are this set)."""
    w = [math.exp(v) for v in log_w]
    out: dict[frozenset, float] = {}
    for order in itertools.permutations(range(len(w)), k):
        p, left = 1.0, sum(w)
        for i in order:
            p *= w[i] / left
            left -= w[i]
        out[frozenset(order)] = out.get(frozenset(order), 0.0) + p
    return out


def expectation(prob: dict[frozenset, float], weight: list[float]) -> float:
    """E[sum_(i in M) weight_i CE(i, M)] over the masks' distribution."""
    return sum(p * sum(weight[i] * CE[i, m] for i in m) for m, p in prob.items())


def target(prob: dict[frozenset, float]) -> float:
    """sum_i E[CE(i, M) | i in M] (positions never masked contribute nothing)."""
    total = 0.0
    for i in range(N):
        p_i = sum(p for m, p in prob.items() if i in m)
        if p_i > 0:
            total += sum(p * CE[i, m] for m, p in prob.items() if i in m) / p_i
    return total


def position_dependent_at(strategy: PositionDependent, m: float) -> tuple[dict, list[float]]:
    """The exact mask distribution at m and the weights the code gives each position there."""
    ms = torch.tensor([m])
    log_w = strategy.log_weights(ms.double(), B)[0].tolist()
    k = int(strategy.masked_count(ms, B))
    return plackett_luce_sets(log_w, k), (1.0 / strategy.inclusion(ms, B))[0].tolist()


@pytest.mark.parametrize("half_life", [0.25, 0.1])
def test_position_dependent_weights_are_unbiased_for_every_m(half_life):
    strategy = PositionDependent(half_life=half_life)
    for m in [1e-3, 0.05, 0.2, 0.45, 0.5, 0.55, 0.7, 0.83, 0.9, 1.0]:  # every k = 1, 2, 3
        prob, weight = position_dependent_at(strategy, m)
        assert sum(prob.values()) == pytest.approx(1.0, abs=1e-12)
        assert expectation(prob, weight) == pytest.approx(target(prob), rel=1e-9), m


def test_inclusion_probabilities_match_plackett_luce_orderings():
    g = torch.Generator().manual_seed(0)
    for n in (2, 3, 5):
        log_w = torch.randn(3, n, generator=g, dtype=torch.float64) * 2
        for k in range(1, n + 1):
            pi = top_k_inclusion(log_w, torch.full((3,), k))
            for r in range(3):
                sets = plackett_luce_sets(log_w[r].tolist(), k)
                exact = [sum(p for s, p in sets.items() if i in s) for i in range(n)]
                torch.testing.assert_close(pi[r], torch.tensor(exact, dtype=torch.float64), atol=1e-9, rtol=0)
    with pytest.raises(ValueError, match=r"every k must lie in \[1, 3\]"):
        top_k_inclusion(torch.zeros(1, 3), torch.tensor([4]))


def test_position_dependent_draw_weighs_each_masked_position_by_its_inverse_inclusion():
    strategy, tokens = PositionDependent(), torch.zeros(3, 64, dtype=torch.long)
    out = strategy(tokens, torch.arange(3), 2, B, 99, 5)
    for row in range(3):
        # the first draw of the sample's generator is m (PositionDependent.draw)
        m = 1e-3 + (1 - 1e-3) * torch.rand(16, generator=sample_generator(5, row, 2))
        expected = torch.cat([torch.zeros(16, 1), 1.0 / strategy.inclusion(m, B).float()], 1)
        mask = out.mask[row].view(16, B)
        torch.testing.assert_close(out.weights[row].view(16, B), expected * mask)


def test_position_dependent_without_tilt_is_the_any_order_sum_with_the_rounding_of_k():
    """half_life -> inf: masks uniform given k, weight n/k; over m ~ U(eps, 1) the expectation is
    sum_k c_k E_(|M|=k)[mean CE], c = (1.5 - 3 eps, 1, 0.5) / (1 - eps) from k = round(3 m)."""
    eps = 1e-3
    strategy = PositionDependent(eps=eps, half_life=1e9)
    by_k = {
        k: sum(sum(CE[i, m] for i in m) / k for m in MASKS if len(m) == k) / math.comb(N, k)
        for k in (1, 2, 3)
    }
    lengths = {1: 0.5 - eps, 2: 1 / 3, 3: 1 / 6}  # the m-intervals where round(3 m) = 1, 2, 3
    centres = {1: 0.25, 2: 2 / 3, 3: 0.92}
    total = sum(lengths[k] * expectation(*position_dependent_at(strategy, centres[k])) for k in (1, 2, 3)) / (
        1 - eps
    )
    expected = ((1.5 - 3 * eps) * by_k[1] + by_k[2] + 0.5 * by_k[3]) / (1 - eps)
    assert total == pytest.approx(expected, rel=1e-9)


def uniform_at(t: float) -> dict[frozenset, float]:
    return {m: t ** len(m) * (1 - t) ** (N - len(m)) for m in MASKS}


def test_uniform_weights_are_unbiased_for_every_t():
    strategy, tokens = Uniform(), torch.zeros(2, 32, dtype=torch.long)
    out = strategy(tokens, torch.arange(2), 0, B, 99, 3)
    for row in range(2):
        # the first draw of the sample's generator is the rate u (Uniform.draw)
        t = 1e-3 + (1 - 1e-3) * torch.rand(8, generator=sample_generator(3, row, 0))
        w = out.weights[row].view(8, B)[:, 1:]
        w = torch.where(out.mask[row].view(8, B)[:, 1:], w, float("nan"))
        for block in range(8):
            code = w[block][~w[block].isnan()]
            if code.numel():  # the weight the code gives this block's masked positions
                assert code.unique().numel() == 1
                prob = uniform_at(t[block].item())
                weight = [code[0].item()] * N
                assert expectation(prob, weight) == pytest.approx(target(prob), rel=1e-5)


def test_uniform_over_t_is_the_mdlm_elbo_in_any_order_form():
    """integral_0^1 E_t[sum_(i in M) CE / t] dt = sum_k E_(|M|=k)[mean_(i in M) CE] (each of the
    n unmasking steps once); the integrand is a polynomial in t, so Gauss-Legendre is exact."""
    x, w = numpy.polynomial.legendre.leggauss(8)
    integral = sum(q / 2 * expectation(uniform_at((t + 1) / 2), [2 / (t + 1)] * N) for t, q in zip(x, w))
    any_order = sum(
        sum(sum(CE[i, m] for i in m) / len(m) for m in MASKS if len(m) == k) / math.comb(N, k)
        for k in (1, 2, 3)
    )
    assert integral == pytest.approx(any_order, rel=1e-12)
