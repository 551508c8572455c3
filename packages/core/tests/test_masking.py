import math

import pytest
import torch

from dlm.core.masking import FixedRatio, PositionDependent, Uniform, sample_generator

MASK = 99
STRATEGIES = [
    Uniform(),
    Uniform(per_sequence=True),
    Uniform(antithetic=True),
    PositionDependent(),
    FixedRatio(0.5),
]


def clean(batch: int, length: int) -> torch.Tensor:
    return torch.randint(0, 50, (batch, length), generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("strategy", STRATEGIES, ids=lambda s: type(s).__name__)
def test_anchor_never_masked_and_outputs_consistent(strategy):
    tokens = clean(6, 64)
    out = strategy(tokens, torch.arange(6), epoch=0, block_size=8, mask_id=MASK, seed=0)
    assert not out.mask[:, ::8].any(), "the first position of every block is an anchor"
    assert torch.equal(out.tokens, torch.where(out.mask, MASK, tokens))
    assert torch.equal(out.weights > 0, out.mask)
    assert out.mask.any()


@pytest.mark.parametrize("strategy", STRATEGIES, ids=lambda s: type(s).__name__)
def test_same_sample_same_mask_whatever_the_batch(strategy):
    """Rows depend on (seed, index, epoch) only: not on batch company, process split or global RNG."""
    tokens = clean(4, 32)
    index = torch.tensor([10, 11, 12, 13])
    whole = strategy(tokens, index, 3, 8, MASK, seed=7)
    torch.manual_seed(123)  # the global RNG plays no part
    # Two "processes", each with half of the batch, in a different order.
    first = strategy(tokens[[1, 0]], index[[1, 0]], 3, 8, MASK, seed=7)
    second = strategy(tokens[2:], index[2:], 3, 8, MASK, seed=7)
    torch.testing.assert_close(torch.cat([first.mask[[1, 0]], second.mask]), whole.mask)
    torch.testing.assert_close(torch.cat([first.weights[[1, 0]], second.weights]), whole.weights)
    # After a "resume": a fresh strategy object gives the same corruption.
    again = type(strategy)(**vars(strategy))(tokens, index, 3, 8, MASK, seed=7)
    assert torch.equal(again.mask, whole.mask)
    assert not torch.equal(strategy(tokens, index, 4, 8, MASK, seed=7).mask, whole.mask), "epoch matters"
    assert not torch.equal(strategy(tokens, index, 3, 8, MASK, seed=8).mask, whole.mask), "seed matters"


def test_position_dependent_masks_exactly_k_per_block():
    strategy, block = PositionDependent(), 16
    for m in (0.01, 0.1, 0.33, 0.5, 0.9, 1.0):
        ms = torch.full((500,), m)
        masked = strategy.select(sample_generator(0), ms, block)
        k = max(1, round(m * (block - 1)))
        assert (masked.sum(1) == k).all()
        # The empirical mask rate equals m up to the rounding to whole positions.
        assert abs(masked.float().mean().item() - m) <= max(0.5 / (block - 1), 1 / (block - 1) - m) + 1e-6


def test_position_dependent_mask_rate_averages_to_mean_m():
    tokens = torch.zeros(400, 64, dtype=torch.long)
    out = PositionDependent(eps=1e-3)(tokens, torch.arange(400), 0, 16, MASK, 0)
    maskable = ~torch.zeros(16, dtype=torch.bool).index_fill(0, torch.tensor([0]), True)
    rate = out.mask[:, maskable.repeat(4)].float().mean().item()
    assert rate == pytest.approx((1 + 1e-3) / 2, abs=0.02)
    # every block masks k = max(1, round(15 m)) positions, m being the sample's first draw
    blocks = out.mask.view(400, 4, 16)
    m = torch.stack(
        [1e-3 + (1 - 1e-3) * torch.rand(4, generator=sample_generator(0, i, 0)) for i in range(400)]
    )
    assert torch.equal(blocks.sum(-1), (m * 15).round().clamp(min=1).long())


def test_position_dependent_small_m_masks_late_positions_as_the_softmax_says():
    """k = 1 makes Gumbel top-k a draw from softmax(log w): the curve must match it."""
    strategy, block, m = PositionDependent(half_life=0.25), 16, 0.02
    masked = strategy.select(sample_generator(3), torch.full((40000,), m), block)
    freq = masked.float().mean(0)
    expected = torch.softmax(strategy.log_weights(torch.tensor([m]), block)[0], 0)
    torch.testing.assert_close(freq, expected, atol=0.01, rtol=0)
    assert freq[-1] > 10 * freq[0]  # 2^(3.5 (1 - m)) ~ 11x
    ratio = math.log(freq[-4:].mean().item() / freq[:4].mean().item())
    assert ratio == pytest.approx(math.log(2) / (0.25 * block) * (1 - m) * 11, rel=0.15)


def test_position_dependent_larger_k_still_increasing_and_m_one_uniform():
    strategy, block = PositionDependent(), 16
    masked = strategy.select(sample_generator(4), torch.full((20000,), 0.2), block)
    freq = masked.float().mean(0)
    assert (freq[1:] - freq[:-1] > -0.01).all() and freq[-1] > 2 * freq[0]
    half = strategy.select(sample_generator(5), torch.full((20000,), 0.5), block)
    near_uniform = strategy.select(sample_generator(5), torch.ones(20000), block).float().mean(0)
    torch.testing.assert_close(near_uniform, torch.ones(15), atol=0, rtol=0)  # k = B-1: all masked
    assert half.float().mean(0).std() > 0.02  # at m = 0.5 the tilt still shows


def test_uniform_mask_rate_and_weights():
    tokens = torch.zeros(300, 64, dtype=torch.long)
    out = Uniform(eps=0.01)(tokens, torch.arange(300), 0, 8, MASK, 0)
    blocks = out.mask.view(300, 8, 8)[..., 1:]
    rate = blocks.float().mean().item()
    assert rate == pytest.approx(0.505, abs=0.02)
    # Per block, the realised rate tracks t = 1/weight.
    t = 1 / out.weights.view(300, 8, 8).amax(-1)
    has = blocks.any(-1)
    corr = torch.corrcoef(torch.stack([t[has], blocks.float().mean(-1)[has]]))[0, 1]
    assert corr > 0.8


def test_uniform_per_sequence_shares_t_and_antithetic_pairs_sum_to_one():
    tokens = torch.zeros(4, 64, dtype=torch.long)
    out = Uniform(per_sequence=True)(tokens, torch.arange(4), 0, 8, MASK, 0)
    w = out.weights[out.mask]
    rows = out.mask.nonzero()[:, 0]
    for r in range(4):
        assert torch.unique(w[rows == r]).numel() == 1
    eps = 1e-3
    anti = Uniform(eps=eps, antithetic=True)
    t = [anti.draw(sample_generator(0, i, 2), 8, 8, i, 2, 0)[1] ** -1 for i in (6, 7, 8, 9)]
    u = [(x - eps) / (1 - eps) for x in t]
    torch.testing.assert_close(u[0] + u[1], torch.ones(8))
    torch.testing.assert_close(u[2] + u[3], torch.ones(8))
    assert not torch.allclose(u[0], u[2])


def test_fixed_ratio_masks_round_ratio_positions():
    out = FixedRatio(0.5)(clean(3, 64), torch.arange(3), 0, 16, MASK, 0)
    assert (out.mask.view(3, 4, 16).sum(-1) == round(0.5 * 15)).all()
    assert (out.weights[out.mask] == 1).all()
    out = FixedRatio(0.01)(clean(3, 64), torch.arange(3), 0, 16, MASK, 0)
    assert (out.mask.view(3, 4, 16).sum(-1) == 1).all(), "at least one position per block"


def test_bad_shapes_are_named():
    with pytest.raises(ValueError, match="sequence length 30 is not a multiple of block_size 8"):
        Uniform()(clean(2, 30), torch.arange(2), 0, 8, MASK, 0)
    with pytest.raises(ValueError, match="block_size must be an integer >= 2"):
        Uniform()(clean(2, 30), torch.arange(2), 0, 1, MASK, 0)
    with pytest.raises(ValueError, match=r"sample_index must be \(2,\)"):
        Uniform()(clean(2, 32), torch.arange(3), 0, 8, MASK, 0)
    with pytest.raises(ValueError, match="eps must lie in"):
        PositionDependent(eps=0.0)
    with pytest.raises(ValueError, match="ratio must lie in"):
        FixedRatio(1.5)


def corrupt_in_process(index: list[int]) -> torch.Tensor:
    torch.manual_seed(sum(index))  # each process has its own global RNG state
    return PositionDependent()(clean(len(index), 32), torch.tensor(index), 1, 8, MASK, 0).mask


def test_two_processes_give_the_single_process_masks():
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(2, mp_context=mp.get_context("spawn")) as pool:
        halves = list(pool.map(corrupt_in_process, [[0, 2], [1, 3]]))
    whole = PositionDependent()(clean(4, 32), torch.arange(4), 1, 8, MASK, 0).mask
    # process 0 held samples 0 and 2, process 1 samples 1 and 3 (a DistributedSampler split)
    assert torch.equal(torch.stack([halves[0][0], halves[1][0], halves[0][1], halves[1][1]]), whole)
