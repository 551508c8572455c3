import pytest
import torch

from dlm.core import ModelConfig, Transformer
from dlm.training import MaskedTokenMetrics, weight_drift
from dlm.training.metrics import block_ratios, layer_type


def test_masked_token_metrics_by_bucket():
    metric = MaskedTokenMetrics(buckets=4)
    metric.update(
        torch.tensor([1.0, 3.0, 2.0]), torch.tensor([True, False, True]), torch.tensor([0.1, 0.2, 0.9])
    )
    metric.update(torch.tensor([4.0]), torch.tensor([False]), torch.tensor([1.0]))
    out = metric.compute()
    assert out["ce"].item() == pytest.approx(2.5) and out["acc"].item() == pytest.approx(0.5)
    assert out["ce@0.00-0.25"].item() == pytest.approx(2.0) and out["acc@0.00-0.25"].item() == pytest.approx(
        0.5
    )
    assert out["ce@0.75-1.00"].item() == pytest.approx(3.0)
    assert "ce@0.25-0.50" not in out


def test_block_ratios():
    mask = torch.tensor([[False, True, True, False, False, False, True, False]])
    torch.testing.assert_close(block_ratios(mask, 4), torch.tensor([[2 / 3] * 4 + [1 / 3] * 4]))


def test_weight_drift_is_relative_frobenius_per_layer_type():
    torch.manual_seed(0)
    a = Transformer(ModelConfig(vocab_size=20, dim=16, n_layers=2, n_heads=2))
    b = Transformer(a.config)
    b.load_state_dict(a.state_dict())
    with torch.no_grad():
        b.layers[0].attn.q.weight.mul_(1.5)
    drift = weight_drift(b, a)
    q0, q1 = a.layers[0].attn.q.weight, a.layers[1].attn.q.weight
    expected = (0.5 * q0).norm() / torch.sqrt(q0.norm() ** 2 + q1.norm() ** 2)
    assert drift["attn.q"] == pytest.approx(expected.item(), rel=1e-5)
    assert drift["attn.k"] == 0 and drift["embed"] == 0
    assert layer_type("layers.11.mlp.down.weight") == "mlp.down"


def test_weight_drift_skips_a_reinitialised_mask_row_and_grown_rows():
    torch.manual_seed(0)
    a = Transformer(ModelConfig(vocab_size=20, dim=16, n_layers=1, n_heads=2))
    b = Transformer(a.config)
    b.load_state_dict(a.state_dict())
    b.add_mask_token(20)
    assert weight_drift(b, a, skip_rows=(20,))["embed"] == 0
    b.add_mask_token(5)
    assert weight_drift(b, a, skip_rows=(5,))["embed"] == 0
    assert weight_drift(b, a)["embed"] > 0
