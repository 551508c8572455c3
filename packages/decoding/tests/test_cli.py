"""dlm-decode end to end on a saved checkpoint: prompt sources, the table, JSON, the plot, errors."""

import json

import pytest
import torch

from dlm.core import ByteTokenizer, save_checkpoint
from dlm.decoding.cli import main


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
    for name in ("self-spec", "fused", "quadratic"):
        row = next(line for line in lines if line.startswith(f"| {name} |"))
        assert row.endswith("| 1.000 |")  # greedy speculation reproduces AR


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
    rows = json.loads(capsys.readouterr().out)
    assert code == 0 and [r["decoder"] for r in rows] == ["ar", "self-spec"]
    assert rows[1]["rows"] == 2 and rows[1]["tokens"] == 10 and rows[1]["agreement_with_ar"] == 1.0
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
    assert json.loads(capsys.readouterr().out)[0]["tokens"] == 6


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--prompts", "missing.txt"], "prompts file not found: missing.txt"),
        (["--prompts", "BAD", "--decoder", "drafter"], "--decoder drafter needs --drafter PATH"),
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
    assert err.startswith(
        "dlm-decode: error: SpeculativeDecoder sets cross_block=True, but DrafterModule never"
    )
    assert err.count("\n") == 1
