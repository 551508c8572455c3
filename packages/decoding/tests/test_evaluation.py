"""The one test-time evaluation: checks that name the decoder, drafter binding, batches, the report."""

import json
import warnings

import pytest
import torch

from dlm.core import DecodeStats, ModelConfig, Transformer
from dlm.core.protocols import Evaluation as EvaluationProtocol
from dlm.core.protocols import LayoutMismatch, LayoutWarning
from dlm.decoding.evaluation import Evaluation


class Repeat:
    """Repeats each prompt's last token; `per_step` tokens per target forward, as verify steps."""

    needs_drafter = False

    def __init__(self, per_step=1, fail=None, warn=None):
        self.per_step, self.fail, self.warn, self.batches = per_step, fail, warn, []

    def check(self, model):
        if self.warn:
            warnings.warn(LayoutWarning(self.warn), stacklevel=2)
        if self.fail:
            raise self.fail

    def bind_drafter(self, drafter):
        raise ValueError("Repeat drafts with its model; it takes no drafter")

    def generate(self, model, prompts, max_new_tokens):
        self.batches.append(len(prompts))
        forwards = len(prompts) * max_new_tokens // self.per_step
        stats = DecodeStats(tokens=len(prompts) * max_new_tokens, rows=len(prompts), seconds=forwards * 1e-3)
        stats.count("target", forwards)
        if self.per_step > 1:
            for _ in range(len(prompts) * max_new_tokens // self.per_step):
                stats.record_verify(self.per_step, self.per_step, self.per_step - 1)
        return [[p[-1]] * max_new_tokens for p in prompts], stats


class Drafted(Repeat):
    needs_drafter = True

    def bind_drafter(self, drafter):
        self.drafter = drafter


def model():
    torch.manual_seed(0)
    return Transformer(ModelConfig(vocab_size=16, dim=16, n_layers=1, n_heads=2, max_seq_len=32))


def test_it_is_the_protocol_training_modules_take():
    assert isinstance(Evaluation({"ar": Repeat()}), EvaluationProtocol)


def test_a_decoder_that_cannot_run_is_named_and_layout_warnings_carry_its_name():
    with pytest.raises(ValueError, match=r"decoder 'spec' \(Repeat\) cannot run: no mask token"):
        Evaluation({"spec": Repeat(fail=ValueError("no mask token"))}).check(model())
    mismatch = LayoutMismatch("Repeat", "drafts k=7 tokens, more than the block holds")
    with pytest.raises(ValueError, match="^decoder 'spec' drafts k=7 tokens, more than the block holds$"):
        Evaluation({"spec": Repeat(fail=mismatch)}).check(model())
    with pytest.warns(UserWarning, match="^decoder 'spec' drafts 3 masks per block"):
        Evaluation({"spec": Repeat(warn="drafts 3 masks per block")}).check(model())


def test_the_drafter_is_bound_to_the_decoders_that_need_one():
    drafted, plain = Drafted(), Repeat()
    drafter = model()
    Evaluation({"d": drafted, "ar": plain}).check(model(), drafter)
    assert drafted.drafter is drafter
    with pytest.raises(ValueError, match=r"decoder 'd' \(Drafted\) needs a drafter; none is given"):
        Evaluation({"d": Drafted()}).check(model())


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(decoders={}), "needs at least one decoder"),
        (dict(prompts=0), "prompts must be a positive integer, got 0"),
        (dict(batch_size=0), "batch_size must be a positive integer or None, got 0"),
        (dict(baseline="ar"), r"baseline decoder 'ar' is not among the decoders \['spec'\]"),
        (dict(report="../x"), "report must be a plain file name stem, got '../x'"),
    ],
)
def test_bad_settings_are_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Evaluation(**{"decoders": {"spec": Repeat()}, **kwargs})


def test_run_decodes_in_interleaved_batches_and_writes_the_report(tmp_path, capsys):
    ar, spec = Repeat(), Repeat(per_step=4)
    plotted = []
    evaluation = Evaluation(
        {"ar": ar, "spec": spec},
        max_new_tokens=8,
        batch_size=2,
        baseline="ar",
        plot=lambda results, path: plotted.append(([n for n, _ in results], path)),
        report="eval",
    )
    net = model()
    net.train()
    result = evaluation.run(net, [[1], [2], [3]], reference=net, directory=tmp_path)
    metrics = result.metrics
    assert net.training, "the model's mode is restored"
    assert ar.batches == spec.batches == [2, 1]
    assert (
        metrics["spec/tpf"] == 4 and metrics["spec/tau"] == 4 and metrics["spec/speedup"] == pytest.approx(4)
    )
    assert metrics["spec/agreement"] == 1.0 and metrics["spec/accept@4"] == 0.0
    assert metrics["spec/reach@1"] == 1.0 and metrics["ar/ar_nll"] > 0 and "ar/tau" not in metrics
    assert metrics["ar/distinct4"] == pytest.approx(3 / 15)  # 3 rows x 5 four-grams, one distinct per row
    report = json.loads((tmp_path / "eval.json").read_text())
    assert report == json.loads(json.dumps(result.report))
    assert report["decoders"]["spec"]["tau"] == 4 and set(report["decoders"]) == {"ar", "spec"}
    assert report["decoders"]["spec"]["class"] == "Repeat" and report["decoders"]["spec"]["tokens"] == 24
    assert report["settings"] == {
        "prompts": 3,
        "prompt_tokens": 32,
        "max_new_tokens": 8,
        "batch_size": 2,
        "seeds": None,
    }
    assert result.outputs["ar"] == [[1] * 8, [2] * 8, [3] * 8] and result.stats["spec"].rows == 3
    table = (tmp_path / "eval.md").read_text()
    assert table.startswith("3 prompts of 1 tokens, 8 new tokens each, decoded 2 at a time")
    assert "| spec | 4.00 | 4.00 |" in table and "| spec | 4.00 | 4.00 |" in capsys.readouterr().out
    assert plotted == [(["spec"], str(tmp_path / "acceptance.png"))]


def test_without_a_directory_nothing_is_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    metrics = Evaluation({"ar": Repeat()}, max_new_tokens=2).run(model(), [[1]]).metrics
    assert metrics["ar/tpf"] == 1 and not list(tmp_path.iterdir())


class Seeded(Repeat):
    """Emits its seed; remembers the stop it decoded with."""

    seed, stop = 7, None

    def generate(self, model, prompts, max_new_tokens):
        self.stops = [*getattr(self, "stops", []), self.stop]
        out, stats = super().generate(model, prompts, max_new_tokens)
        return [[self.seed] * max_new_tokens for _ in prompts], stats


def test_run_takes_a_stop_seeds_and_a_scorer():
    """A row-level stop and per-pass seeds are the decoders' meanwhile (then put back); the outputs
    come seed after seed; a scorer's numbers join the metrics and the report."""
    a, b = Seeded(), Seeded()
    stop = lambda row: False  # noqa: E731
    seen = {}

    def score(outputs):
        seen.update(outputs)
        return {"a/pass@1": 0.5}

    evaluation = Evaluation({"a": a, "b": b}, max_new_tokens=1, batch_size=1, baseline="a")
    result = evaluation.run(model(), [[1], [2]], stop=stop, seeds=[3, 4], score=score)
    assert result.outputs["a"] == [[3], [3], [4], [4]] == seen["a"]
    assert a.stops == [stop] * 4 and (a.seed, a.stop) == (7, None)
    assert result.metrics["a/pass@1"] == 0.5 and result.report["decoders"]["a"]["pass@1"] == 0.5
    assert result.report["settings"]["seeds"] == [3, 4] and result.stats["b"].rows == 4
    assert "| a | 0.500 |" in evaluation.table(result)
