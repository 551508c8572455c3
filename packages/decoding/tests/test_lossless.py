"""Speculative sampling is lossless: the first five generated tokens are distributed exactly as AR sampling.

A random model over a 2-token vocabulary (+ [MASK]) gives the exact AR joint of the first five tokens
by enumeration (32 cells); each decoder samples N rows (one batch, seeded) and a chi-square test
compares the counts with it. Five tokens reach every branch: with k <= 2 a row's first verify step
emits at most 4 tokens, so the later ones come from the following steps (the fused decoder's
candidate block after a full acceptance, quadratic's candidate j for every accepted count j, the
drafter's catch-up forward); a spy on `verify` checks that each of them ran often. Few cells give
the test its power: N = 2000 rows reject a rule that is wrong only after the first step (tested
below), which 81 cells (3 tokens, 4 positions) missed at the same N.
"""

import copy
import itertools

import pytest
import torch
from reference_decoding import causal_logits

from dlm.decoding import (
    ARDecoder,
    DrafterSpeculativeDecoder,
    FusedSelfSpeculativeDecoder,
    SelfSpeculativeDecoder,
    fused,
    sampling,
    verify,
)

N, LENGTH, PROMPT, VOCAB, MASK = 2000, 5, [0, 1, 1], 3, 2


@pytest.fixture(scope="module")
def models(make_model):
    """(target, drafter) with and without token shift (shift changes only which logit drafts)."""
    tiny = dict(vocab_size=VOCAB, mask_token_id=MASK, dim=16, n_heads=2, n_kv_heads=1, init_std=0.3)
    return {
        shift: (
            make_model(token_shift=shift, seed=11, **tiny),
            make_model(token_shift=shift, seed=12, **tiny),
        )
        for shift in (True, False)
    }


def ar_joint(model, sampler) -> torch.Tensor:
    """Exact P(x_1..x_LENGTH) under AR sampling, flattened in lexicographic order (2^LENGTH,)."""
    joint = torch.ones(1, dtype=torch.float64)
    for depth in range(LENGTH):
        prefixes = itertools.product(range(MASK), repeat=depth)
        steps = [sampler.probs(causal_logits(model, PROMPT + list(x))[-1], MASK)[:MASK] for x in prefixes]
        joint = (joint[:, None] * torch.stack(steps)).flatten()
    return joint


def chi_square_p_value(tokens: list[list[int]], expected_p: torch.Tensor) -> float:
    weights = MASK ** torch.arange(LENGTH - 1, -1, -1)
    cells = (torch.tensor([row[:LENGTH] for row in tokens]) * weights).sum(-1)
    observed = torch.bincount(cells, minlength=len(expected_p)).double()
    expected = expected_p * len(tokens)
    big = expected >= 5  # pool the rare cells so the chi-square approximation holds
    e = torch.cat([expected[big], expected[~big].sum(0, keepdim=True)])
    o = torch.cat([observed[big], observed[~big].sum(0, keepdim=True)])
    keep = e > 0
    statistic = ((o[keep] - e[keep]) ** 2 / e[keep]).sum()
    df = int(keep.sum()) - 1
    return float(torch.special.gammaincc(torch.tensor(df / 2.0, dtype=torch.float64), statistic / 2))


def make(name: str, k: int, cross_block: bool, drafter, **settings):
    if name == "self-spec":
        return SelfSpeculativeDecoder(k=k, cross_block=cross_block, **settings)
    if name == "drafter":
        return DrafterSpeculativeDecoder(drafter, k=k, cross_block=cross_block, **settings)
    return FusedSelfSpeculativeDecoder(k=k, quadratic=name == "quadratic", **settings)


# (decoder, token shift, cross_block): fused and quadratic have no cross_block option.
BRANCHES = [("self-spec", True, True), ("drafter", True, True)] + [
    (name, shift, False) for name in ("self-spec", "fused", "quadratic", "drafter") for shift in (True, False)
]
GRID = [(name, shift, cross, k) for name, shift, cross in BRANCHES for k in (1, 2)]


def grid_id(name: str, shift: bool, cross: bool, k: int) -> str:
    return f"{name}-{'shift' if shift else 'noshift'}{'-cross' if cross else ''}-k{k}"


@pytest.fixture
def verify_spy(monkeypatch):
    """(drafts, accepted) of every verify call, in order: the first N are every row's first step."""
    calls: list[tuple[int, int]] = []
    right = verify.verify

    def spy(sampler, logits, drafts, mask_id, generator):
        n, token = right(sampler, logits, drafts, mask_id, generator)
        calls.append((len(drafts.tokens), n))
        return n, token

    monkeypatch.setattr(verify, "verify", spy)
    monkeypatch.setattr(fused, "verify", spy)
    return calls


def sample(models, name, shift, cross, k, **settings):
    target, drafter = models[shift]
    decoder = make(name, k, cross, drafter, seed=1, **settings)
    tokens, _ = decoder.generate(target, [PROMPT] * N, LENGTH)
    return tokens, ar_joint(target, decoder.sampler)


@pytest.mark.slow  # ~1-3 s per case
@pytest.mark.parametrize(("name", "shift", "cross", "k"), GRID, ids=[grid_id(*g) for g in GRID])
def test_five_tokens_are_distributed_as_ar_sampling(models, verify_spy, name, shift, cross, k):
    tokens, joint = sample(models, name, shift, cross, k, temperature=1.0)
    p = chi_square_p_value(tokens, joint)
    assert p > 1e-3, f"chi-square p-value {p:.2e}"
    first, later = verify_spy[:N], verify_spy[N:]
    assert len(later) > N, "the later steps, where the branches are, ran too rarely"
    if name == "fused":  # candidate drafts (the first prediction dropped) were verified
        candidate = k if shift else k - 1
        assert sum(m == candidate for m, _ in later) > N / 10
    if name == "quadratic":  # the candidate for every accepted count j = 0..m was used
        m = first[0][0]
        assert all(sum(n == j for _, n in first) > N / 20 for j in range(m + 1))


TOP_P = [("self-spec", True, True, 2), ("quadratic", True, False, 2), ("drafter", False, False, 2)]


@pytest.mark.slow
@pytest.mark.parametrize(("name", "shift", "cross", "k"), TOP_P, ids=[grid_id(*s) for s in TOP_P])
def test_top_p_sampling_is_lossless(models, name, shift, cross, k):
    """top_p = 0.8 keeps one token where the model is surer than that, both elsewhere."""
    tokens, joint = sample(models, name, shift, cross, k, temperature=0.8, top_p=0.8)
    p = chi_square_p_value(tokens, joint)
    assert p > 1e-3, f"chi-square p-value {p:.2e}"


def test_ar_sampling_matches_the_enumeration(models):
    target = models[False][0]
    tokens, _ = ARDecoder(temperature=1.0, seed=1).generate(target, [PROMPT] * N, LENGTH)
    assert chi_square_p_value(tokens, ar_joint(target, sampling.Sampler(1.0))) > 1e-3


def wrong_ratio(p_draft, q_draft):
    return (q_draft / p_draft).clamp(max=1.0)


def wrong_residual(p, q):
    return p


WRONG = {"q/p": ("acceptance_ratio", wrong_ratio), "p": ("residual", wrong_residual)}


@pytest.mark.slow
@pytest.mark.parametrize(("name", "shift"), [("self-spec", True), ("drafter", False)])
@pytest.mark.parametrize("wrong", list(WRONG))
def test_catches_a_wrong_acceptance_rule(models, monkeypatch, name, shift, wrong):
    monkeypatch.setattr(sampling, *WRONG[wrong])
    tokens, joint = sample(models, name, shift, False, 2, temperature=1.0)
    assert chi_square_p_value(tokens, joint) < 1e-6


# A residual taken from p changes little where rejections are rare; fused without shift shows it.
LATE = [("q/p", "fused", True, 2), ("q/p", "fused", False, 2), ("q/p", "quadratic", True, 2)]
LATE += [("q/p", "drafter", False, 1), ("p", "fused", False, 2)]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("wrong", "name", "shift", "k"), LATE, ids=[f"{w}-{grid_id(n, s, False, k)}" for w, n, s, k in LATE]
)
def test_catches_a_rule_wrong_only_after_the_first_step(models, monkeypatch, wrong, name, shift, k):
    """Every row's first verify step (the first N calls) is right, the later ones wrong: only the
    later tokens, where the candidate-block and catch-up branches act, can show it."""
    attribute, bad = WRONG[wrong]
    right, accept, calls = getattr(sampling, attribute), verify.accept_sampled, []

    def counted(*args):
        calls.append(1)
        return accept(*args)

    monkeypatch.setattr(verify, "accept_sampled", counted)
    monkeypatch.setattr(sampling, attribute, lambda *a: (right if len(calls) <= N else bad)(*a))
    tokens, joint = sample(models, name, shift, False, k, temperature=1.0)
    assert chi_square_p_value(tokens, joint) < 1e-6


def test_draws_are_reproducible(models):
    decoder = SelfSpeculativeDecoder(k=2, temperature=1.0, seed=3)
    target = models[True][0]
    assert decoder.generate(target, [PROMPT] * 5, 6)[0] == decoder.generate(target, [PROMPT] * 5, 6)[0]


@pytest.mark.slow
@pytest.mark.parametrize("quadratic", [None, False, True], ids=["self-spec", "fused", "quadratic"])
def test_sampling_with_a_draft_adapter_is_distributed_as_the_base(models, quadratic):
    """The adapter drafts, the base verifies: the output is the base's AR sampling distribution."""
    from dlm.core.adapter import DraftAdapter, adapter_parameters, add_adapter

    base = models[False][0]
    adapted = copy.deepcopy(base)
    add_adapter(adapted, DraftAdapter(targets=("q", "o", "up"), rank=2, alpha=4.0))
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for parameter in adapter_parameters(adapted).values():
            parameter.add_(torch.randn(parameter.shape, generator=g, dtype=parameter.dtype) * 0.5)
    if quadratic is None:
        decoder = SelfSpeculativeDecoder(k=2, temperature=1.0, seed=1)
    else:
        decoder = FusedSelfSpeculativeDecoder(k=2, quadratic=quadratic, temperature=1.0, seed=1)
    tokens, _ = decoder.generate(adapted, [PROMPT] * N, LENGTH)
    p = chi_square_p_value(tokens, ar_joint(base, decoder.sampler))
    assert p > 1e-3, f"chi-square p-value {p:.2e}"
