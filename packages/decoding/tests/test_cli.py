"""dlm-decode end to end on a saved checkpoint: prompt sources, the table, JSON, the plot, errors;
it decodes through the one Evaluation (interleaved, the same report as a module's test)."""

import json

import pytest
import torch

from dlm.core import ByteTokenizer, save_checkpoint
from dlm.decoding.arguments import spelled
from dlm.decoding.cli import main
from dlm.decoding.options import short_decoders


@pytest.fixture(scope="module")
def checkpoint(make_model, tmp_path_factory):
    tok = ByteTokenizer()
    model = make_model(vocab_size=tok.vocab_size, mask_token_id=tok.mask_id, dtype=torch.float32)
    return save_checkpoint(model, tok, tmp_path_factory.mktemp("ckpt") / "tiny")


def test_table_from_a_prompt_file(checkpoint, tmp_path, capsys):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("hello world\n\nfoo\n")
    code = main(
        [
            "--checkpoint",
            str(checkpoint),
            "--prompts",
            str(prompts),
            "--decoder",
            "self-spec",
            "fused",
            "quadratic",
            "block",
            "--max-new-tokens",
            "6",
            "--k",
            "2",
            "--block-size",
            "4",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    lines = out.strip().splitlines()
    assert lines[0].startswith("| decoder | TPF") and len(lines) == 2 + 5
    assert lines[2].startswith("| ar | 1.00 |")
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    agreement = header.index("agreement with ar")
    for name in ("self-spec", "fused", "quadratic"):
        row = next(line for line in lines if line.startswith(f"| {name} |"))
        assert row.strip("|").split("|")[agreement].strip() == "1.000"  # greedy speculation is AR


def test_json_from_a_corpus_and_jsonl_with_a_plot(checkpoint, tmp_path, capsys):
    code = main(
        [
            "--checkpoint",
            str(checkpoint),
            "--corpus",
            "shakespeare",
            "--num-prompts",
            "2",
            "--prompt-tokens",
            "12",
            "--decoder",
            "self-spec",
            "--k",
            "4",
            "--max-new-tokens",
            "5",
            "--json",
            "--plot",
            str(tmp_path / "acc.png"),
        ]
    )
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and list(report["decoders"]) == ["ar", "self-spec"]
    spec = report["decoders"]["self-spec"]
    assert spec["rows"] == 2 and spec["tokens"] == 10 and spec["agreement"] == 1.0
    assert (tmp_path / "acc.png").stat().st_size > 1000
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text('{"text": "abc"}\n{"text": "de"}\n')
    assert (
        main(
            [
                "--checkpoint",
                str(checkpoint),
                "--prompts",
                str(jsonl),
                "--decoder",
                "ar",
                "--json",
                "--max-new-tokens",
                "3",
                "--temperature",
                "0.5",
            ]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out)["decoders"]["ar"]["tokens"] == 6


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--prompts", "missing.txt"], "prompts file not found: missing.txt"),
        (["--prompts", "BAD", "--decoder", "drafter"], "--decoder drafter needs --drafter PATH"),
        (["--prompts", "BAD", "--decoder", "nonsense"], "--decoder: got ['nonsense'], expected one of ["),
        (["--prompts", "BAD", "--k", "two"], "--k: got two, expected int"),
        (["--prompts", "BAD", "--no-such-option", "1"], "unrecognized arguments: --no-such-option 1"),
        (
            [
                "--prompts",
                "BAD",
                "--decoders",
                "{a: {class_path: dlm.decoding.ARDecoder, init_args: {kk: 1}}}",
            ],
            "Option 'kk' is not accepted",
        ),
        (["--prompts", "BAD", "--batch-size", "0"], "--batch-size must be a positive integer, got 0"),
        (["--corpus", "shakespeare", "--num-prompts", "0"], "--num-prompts must be a positive integer"),
        (["--corpus", "nope"], "--corpus must be one of"),
        (["--prompts", "BAD", "--corpus", "shakespeare"], "give one prompt source"),
        (["--prompts", "BAD", "--clean", "block", "--decoder", "block", "--block-size", "1"], "block_size"),
        (["--prompts", "BAD", "--k", "0"], "k must be a positive integer, got 0"),
        (["--prompts", "BAD", "--temperature", "-1"], "temperature must be >= 0"),
        (["--prompts", "JSONL"], "p.jsonl:1: expected a JSON object with a 'text' field"),
        (["--prompts", "NUMBERS"], "n.jsonl:2: 'text' must be a non-empty string, got 5"),
        (["--prompts", "LATIN1"], "latin1.txt: not UTF-8 text (invalid continuation byte at byte 3)"),
        (["--prompts", "BAD", "--threads", "0"], "--threads must be a positive integer, got 0"),
        (
            ["--prompts", "BAD", "--device", "nonsense"],
            "--device 'nonsense' cannot be used here (Expected one of",
        ),
        (["--prompts", "BAD", "--plot", "x.png", "--decoder", "ar"], "nothing to plot"),
    ],
)
def test_errors_are_one_line(checkpoint, tmp_path, capsys, extra, message):
    good = tmp_path / "ok.txt"
    good.write_text("hi\n")
    (tmp_path / "p.jsonl").write_text("not json\n")
    (tmp_path / "n.jsonl").write_text('{"text": "ok"}\n{"text": 5}\n')
    (tmp_path / "latin1.txt").write_bytes("caf\u00e9\n".encode("latin-1"))
    files = {"BAD": good, "JSONL": tmp_path / "p.jsonl", "NUMBERS": tmp_path / "n.jsonl"}
    files["LATIN1"] = tmp_path / "latin1.txt"
    extra = [str(files[e]) if e in files else e for e in extra]
    assert main(["--checkpoint", str(checkpoint), "--max-new-tokens", "2", *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dlm-decode: error: ") and message in err and err.count("\n") == 1


def test_missing_checkpoint_is_one_line(tmp_path, capsys):
    assert main(["--checkpoint", str(tmp_path / "nope"), "--prompts", "x"]) == 2
    assert "dlm-decode: error: " in capsys.readouterr().err


class Payload:
    """Pickles as os.system("touch <marker>"): what a hostile checkpoint runs while it loads."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_a_checkpoint_with_a_pickled_payload_is_refused_before_it_runs(make_model, tmp_path, capsys):
    from dlm.core.checkpoint import checkpoint_record

    tok, marker = ByteTokenizer(), tmp_path / "payload-ran"
    model = make_model(vocab_size=tok.vocab_size, mask_token_id=tok.mask_id, dtype=torch.float32)
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    ckpt = {"state_dict": state, "dlm": checkpoint_record(model, tok), "hyper_parameters": Payload(marker)}
    torch.save(ckpt, tmp_path / "x.ckpt")
    assert main(["--checkpoint", str(tmp_path / "x.ckpt"), "--corpus", "shakespeare"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(
        f"dlm-decode: error: {tmp_path}/x.ckpt: refused to load: it holds a pickled posix.system"
    )
    assert err.count("\n") == 1 and not marker.exists()


def test_cross_block_with_a_drafter_module_drafter_is_one_line(checkpoint, make_model, tmp_path, capsys):
    from dlm.core.checkpoint import TrainingRecord

    tok = ByteTokenizer()
    drafter = make_model(vocab_size=tok.vocab_size, mask_token_id=tok.mask_id, dtype=torch.float32)
    trained = TrainingRecord("DrafterModule", block_size=8, k=7, token_shift=True)
    save_checkpoint(drafter, tok, tmp_path / "drafter", trained)
    (tmp_path / "p.txt").write_text("hi\n")
    args = ["--checkpoint", str(checkpoint), "--prompts", str(tmp_path / "p.txt"), "--decoder", "drafter"]
    assert main([*args, "--drafter", str(tmp_path / "drafter"), "--cross-block"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dlm-decode: error: decoder 'drafter' sets cross_block=True, but DrafterModule")
    assert err.count("\n") == 1


def test_decoders_run_interleaved_through_the_evaluation(checkpoint, tmp_path, capsys, monkeypatch):
    """Batch by batch, every decoder decodes a batch before the next batch: the order a module's
    test decodes in, so their tok/s ratios are comparable."""
    from dlm.decoding import ARDecoder, SelfSpeculativeDecoder

    calls = []
    for cls in (ARDecoder, SelfSpeculativeDecoder):
        original = cls.generate

        def spy(self, model, prompts, budget, original=original, cls=cls):
            calls.append((cls.__name__, len(prompts)))
            return original(self, model, prompts, budget)

        monkeypatch.setattr(cls, "generate", spy)
    prompts = tmp_path / "p.txt"
    prompts.write_text("a\nbb\nccc\n")
    args = ["--checkpoint", str(checkpoint), "--prompts", str(prompts), "--decoder", "self-spec"]
    assert main([*args, "--k", "2", "--max-new-tokens", "3", "--batch-size", "2"]) == 0
    capsys.readouterr()
    spec = "SelfSpeculativeDecoder"
    assert calls == [("ARDecoder", 2), (spec, 2), ("ARDecoder", 1), (spec, 1)]


def test_the_output_directory_holds_the_report_a_module_test_writes(checkpoint, tmp_path, capsys):
    """results.json holds the Evaluation's report (the schema of a module's test report), the
    resolved config (decoders as class_path/init_args) and the dtype."""
    from dlm.core.results import read_results

    prompts = tmp_path / "p.txt"
    prompts.write_text("hello\nworld\n")
    out = tmp_path / "out"
    argv = ["--checkpoint", str(checkpoint), "--prompts", str(prompts), "--decoder", "self-spec", "fused"]
    label = ["--experiment", "bench", "--variant", "tiny-fp32"]
    assert main([*argv, *label, "--k", "2", "--max-new-tokens", "4", "--output", str(out)]) == 0
    capsys.readouterr()
    results = read_results(out / "results.json")
    report = results["evaluation"]
    # what dlm-report tables a run by
    assert (results["experiment"], results["variant"], results["seed"]) == ("bench", "tiny-fp32", 0)
    assert results["dtype"] == "float32" and results["command"][0] == "dlm-decode"
    assert results["config"]["decoder"] == ["self-spec", "fused"] and results["config"]["k"] == 2
    assert set(report) == {"title", "settings", "baseline", "decoders"} and report["baseline"] == "ar"
    assert list(report["decoders"]) == ["ar", "self-spec", "fused"]
    assert report["decoders"]["fused"]["class"] == "FusedSelfSpeculativeDecoder"
    assert results["metrics"]["self-spec/agreement"] == 1.0
    assert json.loads((out / "decoding.json").read_text()) == report
    assert (out / "decoding.md").read_text().startswith(report["title"])


def test_decoders_configured_as_in_a_yaml_evaluation_block(checkpoint, tmp_path, capsys):
    """--decoders (or a --config file) takes class_path/init_args by name, as `evaluation:` does;
    eos_id left unset is the tokenizer's."""
    prompts = tmp_path / "p.txt"
    prompts.write_text("hello\n")
    config = tmp_path / "decoders.yaml"
    config.write_text(
        "decoders:\n"
        "  ar: {class_path: dlm.decoding.ARDecoder}\n"
        "  spec3: {class_path: dlm.decoding.SelfSpeculativeDecoder, init_args: {k: 3}}\n"
    )
    argv = ["--checkpoint", str(checkpoint), "--prompts", str(prompts), "--max-new-tokens", "4"]
    assert main([*argv, "--config", str(config), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert list(report["decoders"]) == ["ar", "spec3"] and report["decoders"]["spec3"]["agreement"] == 1.0
    assert main([*argv, "--config", str(config), "--decoder", "ar"]) == 2
    assert "not both" in capsys.readouterr().err


def test_one_table_writer():
    """Every table of decoders comes from dlm.decoding.metrics.decode_table."""
    from pathlib import Path

    import dlm.decoding

    (root,) = dlm.decoding.__path__
    writers = [p.name for p in Path(root).rglob("*.py") if '"| decoder |' in p.read_text()]
    assert writers == ["metrics.py"]


def test_a_base_plus_its_draft_adapter(checkpoint, tmp_path, capsys):
    from dlm.core import load_model
    from dlm.core.adapter import DraftAdapter, adapter_parameters, add_adapter, save_adapter

    model, _ = load_model(checkpoint)
    add_adapter(model, DraftAdapter(rank=2))
    with torch.no_grad():
        for parameter in adapter_parameters(model).values():
            parameter.add_(torch.randn_like(parameter))
    save_adapter(model, tmp_path / "adapter")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("hello world\nfoo\n")
    args = ["--checkpoint", str(checkpoint), "--prompts", str(prompts), "--max-new-tokens", "6", "--k", "2"]
    assert main([*args, "--adapter", str(tmp_path / "adapter"), "--decoder", "self-spec", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert "self-spec" in json.dumps(report) and '"agreement": 1.0' in json.dumps(report)
    other = tmp_path / "other"
    add_adapter(base := load_model(checkpoint)[0], DraftAdapter(rank=2))
    with torch.no_grad():
        base.embed.weight.add_(1.0)
    save_adapter(base, other)
    assert main([*args, "--adapter", str(other), "--decoder", "self-spec"]) == 2
    err = capsys.readouterr().err
    assert "the adapter was trained on base" in err and err.count("\n") == 1


def test_a_bare_compile_flag_means_true_and_a_mode_is_kept():
    assert spelled(["--compile", "--k", "2"], short_decoders) == ["--compile=true", "--k", "2"]
    assert spelled(["--compile", "reduce-overhead"], short_decoders) == ["--compile", "reduce-overhead"]
    assert spelled(["--compile", "false"], short_decoders) == ["--compile", "false"]
