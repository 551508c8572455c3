"""Segments: the per-row layout mask, checked against masks written out by hand."""

import pytest
import torch

from dlm.attention import Draft, Segments, Verify
from dlm.decoding.layout import Layout


def test_single_uniform_segments_are_draft_and_verify():
    layout = Layout([3, 5])
    for r in range(2):
        layout.add(r, [1, 2, 3], 7, causal=True)
    tokens, positions, mask, _ = layout.build(torch.device("cpu"))
    assert mask == Verify((3, 5), 3)
    assert positions.tolist() == [[7, 8, 9], [7, 8, 9]] and tokens.tolist() == [[1, 2, 3], [1, 2, 3]]
    layout = Layout([3, 5])
    layout.add(0, [1, 2], 3, causal=False)  # row 1 is finished: it copies row 0's shape
    _, positions, mask, _ = layout.build(torch.device("cpu"), filler=9)
    assert mask == Draft((3, 5), 2) and positions.tolist() == [[3, 4], [5, 6]]


def test_verify_then_candidate_blocks_by_hand():
    """Row 0: verify [t, d1, d2] then a candidate block seeing t, d1; row 1: a draft block and padding."""
    layout = Layout([2, 4])
    assert layout.add(0, [10, 11, 12], 2, causal=True) == 0
    assert layout.add(0, [12, 0, 0], 4, causal=False, sees=2) == 3
    layout.add(1, [20, 0, 0], 4, causal=False)
    tokens, positions, mask, _ = layout.build(torch.device("cpu"), filler=7)
    assert isinstance(mask, Segments)
    assert tokens.tolist() == [[10, 11, 12, 12, 0, 0], [20, 0, 0, 7, 7, 7]]
    assert positions.tolist() == [[2, 3, 4, 4, 5, 6], [4, 5, 6, 7, 8, 9]]
    T, F = True, False
    expected = torch.tensor(
        [
            # keys: row r's cached prefix, then its 6 new tokens, then unused slots
            [
                [T, T, T, F, F, F, F, F, F, F],
                [T, T, T, T, F, F, F, F, F, F],
                [T, T, T, T, T, F, F, F, F, F],
                [T, T, T, T, F, T, T, T, F, F],
                [T, T, T, T, F, T, T, T, F, F],
                [T, T, T, T, F, T, T, T, F, F],
            ],
            [
                [T, T, T, T, T, T, T, F, F, F],
                [T, T, T, T, T, T, T, F, F, F],
                [T, T, T, T, T, T, T, F, F, F],
                [T, T, T, T, F, F, F, T, F, F],
                [T, T, T, T, F, F, F, F, T, F],
                [T, T, T, T, F, F, F, F, F, T],
            ],
        ]
    )
    assert torch.equal(mask.materialize(6, 10), expected)


def test_segments_equal_draft_and_verify_when_uniform():
    for causal, cls in ((True, Verify), (False, Draft)):
        seg = Segments((1, 3), ((0,) * 3,) * 2, ((0,) * 3,) * 2, ((3,) * 3,) * 2, ((causal,) * 3,) * 2)
        assert torch.equal(seg.materialize(3, 6), cls((1, 3), 3).materialize(3, 6))


def test_wrong_shape_is_a_clear_error():
    seg = Segments((1,), ((0, 0),), ((0, 0),), ((2, 2),), ((True, True),))
    with pytest.raises(ValueError, match="expects q_len=2, kv_len=3"):
        seg.materialize(2, 4)
    with pytest.raises(ValueError, match="at least one new token"):
        Layout([1]).build(torch.device("cpu"))
