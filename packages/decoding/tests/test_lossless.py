"""Speculative sampling is lossless: the first generated tokens are distributed exactly as AR sampling.

A random model over a 5-token vocabulary (+ [MASK]) gives the exact AR distribution of the first two
tokens by enumeration; each decoder samples N rows (one batch, seeded), and a chi-square test
compares the counts with it. The same test must reject deliberately wrong acceptance rules, so it
has the power to catch a broken one.
"""

import pytest
import torch

from dlm.decoding import (
    ARDecoder,
    FusedSelfSpeculativeDecoder,
    SelfSpeculativeDecoder,
    SpeculativeDecoder,
    sampling,
)
from dlm.decoding.reference import causal_logits

N, PROMPT, VOCAB, MASK = 3000, [0, 1, 2], 6, 5


@pytest.fixture(scope="module")
def tiny(make_model):
    return make_model(
        vocab_size=VOCAB, mask_token_id=MASK, dim=16, n_heads=2, n_kv_heads=1, init_std=0.3, seed=11
    )


@pytest.fixture(scope="module")
def drafter(make_model):
    return make_model(
        vocab_size=VOCAB, mask_token_id=MASK, dim=16, n_heads=2, n_kv_heads=1, init_std=0.3, seed=12
    )


def ar_distribution(model, sampler) -> torch.Tensor:
    """Exact P(x1, x2) under AR sampling, (5, 5)."""
    p1 = sampler.probs(causal_logits(model, PROMPT)[-1], MASK)[:MASK]
    rows = [p1[a] * sampler.probs(causal_logits(model, PROMPT + [a])[-1], MASK)[:MASK] for a in range(MASK)]
    return torch.stack(rows)


def chi_square_p_value(tokens: list[list[int]], expected_p: torch.Tensor) -> float:
    counts = torch.zeros(MASK, MASK, dtype=torch.float64)
    for row in tokens:
        counts[row[0], row[1]] += 1
    expected = expected_p.flatten() * len(tokens)
    observed = counts.flatten()
    big = expected >= 5  # pool the rare cells so the chi-square approximation holds
    e = torch.cat([expected[big], expected[~big].sum(0, keepdim=True)])
    o = torch.cat([observed[big], observed[~big].sum(0, keepdim=True)])
    keep = e > 0
    statistic = ((o[keep] - e[keep]) ** 2 / e[keep]).sum()
    df = int(keep.sum()) - 1
    return float(torch.special.gammaincc(torch.tensor(df / 2.0, dtype=torch.float64), statistic / 2))


DECODERS = {
    "ar": lambda d, **s: ARDecoder(**s),
    "self-spec": lambda d, **s: SelfSpeculativeDecoder(k=2, **s),
    "fused": lambda d, **s: FusedSelfSpeculativeDecoder(k=2, **s),
    "quadratic": lambda d, **s: FusedSelfSpeculativeDecoder(k=2, quadratic=True, **s),
    "drafter": lambda d, **s: SpeculativeDecoder(d, k=2, **s),
}


CASES = [(name, dict(temperature=1.0)) for name in DECODERS] + [
    (name, dict(temperature=0.8, top_k=3)) for name in ("self-spec", "quadratic", "drafter")
]


@pytest.mark.parametrize(
    ("name", "settings"), CASES, ids=[f"{n}-{'-'.join(map(str, s.values()))}" for n, s in CASES]
)
def test_output_is_distributed_as_ar_sampling(tiny, drafter, name, settings):
    decoder = DECODERS[name](drafter, seed=1, **settings)
    tokens, _ = decoder.generate(tiny, [PROMPT] * N, 2)
    p = chi_square_p_value(tokens, ar_distribution(tiny, decoder.sampler))
    assert p > 1e-3, f"{name}: chi-square p-value {p:.2e}"


def wrong_ratio(p_draft, q_draft):
    return (q_draft / p_draft).clamp(max=1.0)


def wrong_residual(p, q):
    return p


@pytest.mark.parametrize("name", ["self-spec", "drafter"])
@pytest.mark.parametrize(
    "patch", [("acceptance_ratio", wrong_ratio), ("residual", wrong_residual)], ids=["q/p", "p"]
)
def test_catches_a_wrong_acceptance_rule(tiny, drafter, monkeypatch, name, patch):
    monkeypatch.setattr(sampling, *patch)
    decoder = DECODERS[name](drafter, seed=1, temperature=1.0)
    tokens, _ = decoder.generate(tiny, [PROMPT] * N, 2)
    assert chi_square_p_value(tokens, ar_distribution(tiny, decoder.sampler)) < 1e-6  # measured: < 1e-8


def test_draws_are_reproducible(tiny):
    decoder = SelfSpeculativeDecoder(k=2, temperature=1.0, seed=3)
    assert decoder.generate(tiny, [PROMPT] * 5, 6)[0] == decoder.generate(tiny, [PROMPT] * 5, 6)[0]
