"""The shared checks (one helper each, one-line errors) and where the decode stats live."""

import pytest
import torch

import dlm.core
from dlm.core import protocols
from dlm.core.checks import check_device, dtype, positive


def test_positive_names_the_value():
    assert positive("k", 3) == 3 and positive("k", None, optional=True) is None
    for bad in (0, -1, True, 2.0, "3"):
        with pytest.raises(ValueError, match=rf"^k must be a positive integer, got {bad!r}$"):
            positive("k", bad)
    with pytest.raises(ValueError, match="^batch_size must be a positive integer or None, got 0$"):
        positive("batch_size", 0, optional=True)


def test_dtype_and_device():
    assert dtype("bfloat16") is torch.bfloat16
    with pytest.raises(ValueError, match="dtype must be one of float32, float64, bfloat16, float16"):
        dtype("fp8")
    assert check_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match=r"^--device 'nonsense' cannot be used here \("):
        check_device("nonsense", "--device")


def test_stats_live_in_stats_and_protocols_hold_only_protocols():
    from dlm.core.stats import DecodeStats, EvaluationResult, agreement, prefix_agreement

    assert dlm.core.DecodeStats is DecodeStats and dlm.core.EvaluationResult is EvaluationResult
    assert callable(agreement) and callable(prefix_agreement)
    assert set(protocols.__all__) == {
        "Decoder",
        "Evaluation",
        "LayoutMismatch",
        "LayoutWarning",
        "Stop",
        "Tokenizer",
    }
    assert dlm.core.CleanStream.__args__ == ("causal", "block")
