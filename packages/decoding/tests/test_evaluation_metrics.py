"""The evaluation's metrics and decoding loop; these tests came from dlm-training
(tests/test_trimode.py and tests/test_metrics.py) with the functions they test, unchanged."""

import math

import pytest
import torch
from fake_decoder import FakeDecoder

from dlm.attention import Causal
from dlm.core import ModelConfig, Transformer
from dlm.decoding.evaluation import decode_interleaved
from dlm.decoding.metrics import decode_metrics, decode_table, distinct_ngrams, reference_nll


def test_decode_metrics_compare_every_decoder_with_the_baseline():
    model = Transformer(ModelConfig(vocab_size=260, dim=32, n_layers=1, n_heads=2, max_seq_len=64))
    prompts = [[1, 2, 3], [4, 5]]
    runs = {
        "ar": FakeDecoder().generate(model, prompts, 8),
        "spec": FakeDecoder(4, speculative=True).generate(model, prompts, 8),
    }
    runs["other"] = ([[0] * 4 + [3] * 4, [5] * 8], runs["ar"][1])
    metrics = decode_metrics(runs, prompts, model, baseline="ar")
    assert metrics["spec/tpf"] == 4 and metrics["spec/tau"] == 4 and "ar/tau" not in metrics
    assert metrics["spec/speedup"] == pytest.approx(4.0) and metrics["ar/speedup"] == 1.0
    assert metrics["spec/agreement"] == 1.0 and metrics["other/agreement"] == 0.75
    assert metrics["ar/ar_nll"] == metrics["spec/ar_nll"] > 0
    table = decode_table(list(runs), metrics, "ar")
    assert table.splitlines()[0].startswith("| decoder | TPF | tau | tok/s | tok/s vs ar | agreement with ar")
    assert "| spec | 4.00 | 4.00 |" in table and "| ar | 1.00 | - |" in table


def test_decoders_run_interleaved_batch_by_batch_with_merged_stats():
    calls, ticks = [], []

    class Recorder(FakeDecoder):
        def __init__(self, name):
            super().__init__()
            self.name = name

        def generate(self, model, prompts, max_new_tokens):
            calls.append((self.name, len(prompts)))
            return super().generate(model, prompts, max_new_tokens)

    prompts = [[1], [2], [3]]
    decoders = {"a": Recorder("a"), "b": Recorder("b")}
    runs = decode_interleaved(decoders, None, prompts, 4, batch_size=2, progress=ticks.append)
    assert calls == [("a", 2), ("b", 2), ("a", 1), ("b", 1)] and ticks == ["a", "b", "a", "b"]
    outputs, stats = runs["b"]
    assert outputs == [[1] * 4, [2] * 4, [3] * 4]
    assert stats.tokens == 12 and stats.rows == 3 and stats.forwards == {"target": 12}
    decode_interleaved(decoders, None, prompts, 4)
    assert calls[-2:] == [("a", 3), ("b", 3)]


def test_reference_nll_is_mean_ce_of_generated_tokens():
    torch.manual_seed(0)
    model = Transformer(ModelConfig(vocab_size=11, dim=16, n_layers=1, n_heads=2)).eval()
    prompts, outputs = [[1, 2, 3], [4]], [[5, 6], []]
    seq = torch.tensor([[1, 2, 3, 5, 6]])
    logp = model(seq, torch.arange(5)[None], Causal()).log_softmax(-1)[0]
    expected = -(logp[2, 5] + logp[3, 6]).item() / 2
    assert reference_nll(model, prompts, outputs) == pytest.approx(expected, rel=1e-5)
    assert math.isnan(reference_nll(model, [[1]], [[]]))


def test_distinct_ngrams():
    assert distinct_ngrams([[1, 2, 3, 4, 5]], 2) == 1.0
    assert distinct_ngrams([[7] * 10, [7, 7]], 2) == pytest.approx(1 / 10)
    assert math.isnan(distinct_ngrams([[1]], 2))
