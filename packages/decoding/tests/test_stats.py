"""DecodeStats bookkeeping and the agreement helpers (dlm.core.protocols)."""

import pytest

from dlm.core.stats import DecodeStats, agreement, prefix_agreement


def test_verify_records_and_derived_metrics():
    s = DecodeStats()
    s.count("target", rows=2)
    s.count("target", rows=1)
    s.record_verify(emitted=4, drafted=3, accepted=3)
    s.record_verify(emitted=2, drafted=3, accepted=1)
    s.tokens, s.seconds = 6, 2.0
    assert s.forwards == {"target": 3} and s.calls == {"target": 2}
    assert s.position_trials == [2, 2, 1] and s.position_accepts == [2, 1, 1]
    assert s.acceptance_by_position == [1.0, 0.5, 1.0]
    assert s.tpf == 2.0 and s.tau == 3.0 and s.tokens_per_second == 3.0
    summary = s.summary()
    assert summary["tpf"] == 2.0 and summary["acceptance_by_position"] == [1.0, 0.5, 1.0]


def test_merged_adds_everything():
    a, b = DecodeStats(), DecodeStats()
    a.count("target", 2)
    b.count("drafter", 3)
    a.record_verify(2, 1, 1)
    b.record_verify(1, 3, 0)
    a.time("target", 1.5)
    b.time("target", 0.5)
    b.time("drafter", 0.25)
    a.tokens, b.tokens, a.rows, b.rows = 2, 1, 2, 3
    a.seconds, b.seconds = 2.0, 3.0
    m = a.merged(b)
    assert m.forward_seconds == {"drafter": 0.25, "target": 2.0} and m.drafter_time_share == 0.05
    assert m.forwards == {"drafter": 3, "target": 2} and m.tokens == 3 and m.rows == 5
    assert m.position_trials == [2, 0, 0] and m.position_accepts == [1, 0, 0] and m.accepted == [2, 1]
    assert m.drafter_forwards_per_token == 1.0


def test_agreement():
    ref = [[1, 2, 3, 4], [5, 6]]
    assert agreement(ref, ref) == prefix_agreement(ref, ref) == 1.0
    out = [[1, 9, 3, 4], [5]]
    assert agreement(out, ref) == 4 / 6
    assert prefix_agreement(out, ref) == 2 / 6
    with pytest.raises(ValueError, match="as many outputs as references"):
        agreement(out, ref[:1])
