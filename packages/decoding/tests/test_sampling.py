"""Sampler: temperature, top-k, top-p, greedy, [MASK] exclusion; the acceptance rules on small cases."""

import pytest
import torch

from dlm.decoding.sampling import Sampler, accept_greedy, accept_sampled, residual


def test_top_k_and_top_p_keep_the_expected_tokens():
    logits = torch.log(torch.tensor([0.1, 0.4, 0.3, 0.2]))
    torch.testing.assert_close(
        Sampler(1.0).probs(logits, None), torch.tensor([0.1, 0.4, 0.3, 0.2], dtype=torch.float64)
    )
    torch.testing.assert_close(
        Sampler(1.0, top_k=2).probs(logits, None), torch.tensor([0, 4 / 7, 3 / 7, 0], dtype=torch.float64)
    )
    # top_p=0.7: 0.4 + 0.3 reaches it, so the tail (0.2, 0.1) goes.
    torch.testing.assert_close(
        Sampler(1.0, top_p=0.7).probs(logits, None), torch.tensor([0, 4 / 7, 3 / 7, 0], dtype=torch.float64)
    )
    torch.testing.assert_close(
        Sampler(1.0, top_p=0.75).probs(logits, None), torch.tensor([0, 4, 3, 2], dtype=torch.float64) / 9
    )
    sharp = Sampler(0.5).probs(logits, None)
    torch.testing.assert_close(sharp, torch.tensor([0.01, 0.16, 0.09, 0.04], dtype=torch.float64) / 0.3)


def test_mask_is_never_picked():
    logits = torch.tensor([[0.0, 9.0, 1.0]])
    assert Sampler().pick(logits, 1, None).tolist() == [2]
    assert Sampler(1.0).probs(logits, 1)[0, 1] == 0
    g = torch.Generator().manual_seed(0)
    assert 1 not in Sampler(5.0).pick(logits.expand(200, -1), 1, g).tolist()
    assert Sampler().probs(logits, None).tolist() == [[0.0, 1.0, 0.0]]


def test_greedy_acceptance():
    assert accept_greedy([5, 6, 7, 8], [5, 6, 7]) == (3, 8)
    assert accept_greedy([5, 6, 7, 8], [5, 9, 7]) == (1, 6)
    assert accept_greedy([4], []) == (0, 4)


def test_speculative_sampling_on_one_slot_matches_the_formula():
    """P(output = v) = q(v) min(1, p/q) + P(reject) * residual(v) = p(v), checked by enumeration of
    the draft and by simulation of the acceptance."""
    p = torch.tensor([[0.5, 0.3, 0.2], [1 / 3, 1 / 3, 1 / 3]], dtype=torch.float64)
    q = torch.tensor([[0.2, 0.2, 0.6]], dtype=torch.float64)
    accept = torch.minimum(torch.ones(3, dtype=torch.float64), p[0] / q[0])
    reject = (q[0] * (1 - accept)).sum()
    torch.testing.assert_close(q[0] * accept + reject * residual(p[0], q[0]), p[0])
    g = torch.Generator().manual_seed(0)
    counts = torch.zeros(3)
    for _ in range(4000):
        d = int(torch.multinomial(q[0], 1, generator=g))
        n, token = accept_sampled(p, q, [d], g)
        counts[d if n == 1 else token] += 1
    assert (counts / 4000 - p[0].float()).abs().max() < 0.03


def test_residual_of_equal_distributions_falls_back_to_p():
    p = torch.tensor([0.5, 0.5], dtype=torch.float64)
    assert residual(p, p).tolist() == [0.5, 0.5]


def test_bad_sampler_settings():
    with pytest.raises(ValueError, match="temperature must be >= 0"):
        Sampler(-1)
