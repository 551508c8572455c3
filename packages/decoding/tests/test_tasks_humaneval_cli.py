"""dlm-eval humaneval end to end on tiny models: stop sequences cut blocks, outputs do not depend
on the batch size, the report's shape, and bad input."""

import json

import pytest

from dlm.core import ByteTokenizer, save_checkpoint
from dlm.decoding import ARDecoder, BlockDiffusionDecoder, FusedSelfSpeculativeDecoder, SelfSpeculativeDecoder
from dlm.decoding.evaluation import decode_interleaved
from dlm.decoding.tasks.cli import main
from dlm.decoding.tasks.humaneval import StopText

DECODERS = {
    "ar": lambda: ARDecoder(),
    "block": lambda: BlockDiffusionDecoder(block_size=4, threshold=0.5),
    "self-spec": lambda: SelfSpeculativeDecoder(k=3),
    "fused": lambda: FusedSelfSpeculativeDecoder(k=3),
    "quadratic": lambda: FusedSelfSpeculativeDecoder(k=3, quadratic=True),
}


def letters(ids):
    return "".join(chr(65 + i) for i in ids)


@pytest.mark.parametrize("name", list(DECODERS))
@pytest.mark.parametrize("batch_size", [1, 2, 4])
def test_a_stop_string_cuts_the_row_where_it_completes(shifted, prompts, name, batch_size):
    """Each row equals the unstopped output up to the token completing the stop string; tokens after
    it (even within the same block) are neither emitted nor counted, at any batch size."""
    free, free_stats = decode_interleaved({name: DECODERS[name]()}, shifted, prompts, 20)[name]
    stops = [letters(free[0][4:6]), letters(free[2][9:11])]
    expected = []
    for row in free:
        ends = [i + 1 for i in range(len(row)) if any(s in letters(row[: i + 1]) for s in stops)]
        expected.append(row[: ends[0]] if ends else row)
    decoder = DECODERS[name]()
    stop = StopText(letters, stops)
    stopped, stats = decode_interleaved({name: decoder}, shifted, prompts, 20, batch_size, stop=stop)[name]
    assert stopped == expected and decoder.stop is None  # the decoder's own stop is put back
    assert len(expected[0]) <= 6 and len(expected[2]) <= 11
    assert stats.tokens == sum(len(r) for r in expected)
    assert stats.forwards["target"] < free_stats.forwards["target"]


PROBLEMS = [
    {
        "task_id": f"Toy/{i}",
        "prompt": f"def f{i}(x):\n    " + "# step\n    " * i,
        "canonical_solution": "return x\n",
        "test": f"def check(f):\n    assert f({i}) == {i}\n",
        "entry_point": f"f{i}",
    }
    for i in range(5)
]


@pytest.fixture(scope="module")
def toy(make_model, tmp_path_factory):
    root = tmp_path_factory.mktemp("toy")
    tok = ByteTokenizer()
    model = make_model(vocab_size=tok.vocab_size, mask_token_id=tok.mask_id, max_seq_len=256)
    no_mask = make_model(vocab_size=tok.vocab_size, mask_token_id=None, max_seq_len=256)
    (root / "problems.jsonl").write_text("".join(json.dumps(p) + "\n" for p in PROBLEMS))
    return {
        "checkpoint": str(save_checkpoint(model, tok, root / "tiny")),
        "no_mask": str(save_checkpoint(no_mask, tok, root / "no-mask")),
        "problems": str(root / "problems.jsonl"),
    }


def run(toy, capsys, *extra, checkpoint="checkpoint"):
    args = ["humaneval", "--checkpoint", toy[checkpoint], "--problems", toy["problems"], "--json"]
    code = main([*args, "--max-new-tokens", "12", "--k", "3", "--block-size", "4", *extra])
    out = capsys.readouterr()
    return code, out


@pytest.mark.slow
def test_completions_and_pass_at_1_do_not_change_with_the_batch_size(toy, capsys, tmp_path):
    """float64: token for token, for every decoder, prompts of different lengths."""
    records = {}
    for b in (1, 3):
        code, out = run(
            toy,
            capsys,
            "--decoder",
            "ar",
            "block",
            "self-spec",
            "fused",
            "--dtype",
            "float64",
            "--batch-size",
            str(b),
            "--output",
            str(tmp_path / str(b)),
        )
        assert code == 0, out.err
        records[b] = json.loads(out.out.strip().splitlines()[-1])
        assert (tmp_path / str(b) / "results.json").is_file()
        files = sorted((tmp_path / str(b)).glob("*.samples.jsonl"))
        assert [f.name for f in files] == [
            f"{n}.samples.jsonl" for n in ("ar", "block", "fused", "self-spec")
        ]
    for name in ("ar", "block", "fused", "self-spec"):
        texts = {b: (tmp_path / str(b) / f"{name}.samples.jsonl").read_text() for b in records}
        assert texts[1] == texts[3]
    passes = {b: [r["pass@1"] for r in rec["decoders"].values()] for b, rec in records.items()}
    assert passes[1] == passes[3]


def test_the_report_pairs_every_decoder_with_ar(toy, capsys, tmp_path):
    """pass@1, its interval and McNemar against AR are metrics of the one report, in the one table,
    beside the decode metrics, as dlm-decode and a module's test report them."""
    code, out = run(toy, capsys, "--decoder", "self-spec", "--limit", "3", "--output", str(tmp_path))
    assert code == 0, out.err
    lines = out.out.strip().splitlines()
    assert lines[0].startswith("| decoder | pass@1 | 95% CI | vs ar (+/-, p) | TPF | tau | tok/s")
    record = json.loads(lines[-1])
    assert set(record) == {"title", "settings", "baseline", "decoders", "reference_solutions"}
    assert record["baseline"] == "ar" and record["reference_solutions"]["ar_nll"] > 0
    assert "masked_ce@0.5" not in record["reference_solutions"]  # an untrained model has no diffusion mode
    ar, spec = record["decoders"]["ar"], record["decoders"]["self-spec"]
    assert spec["pass@1"] == 0.0 and spec["pass@1_low"] == 0.0 and spec["pass@1_high"] > 0.5
    assert spec["problems"] == 3 and spec["agreement"] == 1.0 and spec["tau"] > 0
    mcnemar = {k: v for k, v in spec.items() if k.startswith("mcnemar_")}
    assert mcnemar == {
        "mcnemar_both": 0,
        "mcnemar_only_this": 0,
        "mcnemar_only_baseline": 0,
        "mcnemar_neither": 3,
        "mcnemar_p": 1.0,
    }
    assert "mcnemar_p" not in ar and ar["tpf"] == 1.0
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["evaluation"] == record and results["config"]["command"] == "humaneval"
    assert results["metrics"]["self-spec/pass@1"] == 0.0 and results["dtype"] == "float32"


def test_sampling_needs_samples_and_reports_the_estimator(toy, capsys):
    code, out = run(toy, capsys, "--decoder", "ar", "--temperature", "0.8", "--limit", "2")
    assert code == 2 and "--temperature 0.8 samples completions: pass --samples n" in out.err
    code, out = run(toy, capsys, "--decoder", "ar", "--temperature", "0.8", "--samples", "2", "--limit", "2")
    assert code == 0, out.err
    report = json.loads(out.out.strip().splitlines()[-1])
    (row,) = report["decoders"].values()
    assert row["samples"] == 4 and row["problems"] == 2 and "pass@1" in row and "pass@1_low" not in row
    assert row["rows"] == 4 and report["settings"]["seeds"] == [0, 1]


@pytest.mark.parametrize(
    "extra, checkpoint, message",
    [
        (["--limit", "0"], "checkpoint", "--limit must be a positive integer, got 0"),
        (
            ["--decoder", "block"],
            "no_mask",
            "decoder 'block' (BlockDiffusionDecoder) cannot run: BlockDiffusionDecoder needs a model with a mask token",
        ),
        (["--samples", "3"], "checkpoint", "greedy decoding gives one completion per problem; --samples 3"),
        (["--threads", "0"], "checkpoint", "--threads must be a positive integer, got 0"),
        (["--device", "nodevice"], "checkpoint", "--device 'nodevice' cannot be used here"),
    ],
)
def test_bad_input_is_one_clear_error(toy, capsys, extra, checkpoint, message):
    code, out = run(toy, capsys, *extra, checkpoint=checkpoint)
    assert code == 2 and out.err.startswith("dlm-eval: error: ") and message in out.err
    assert len(out.err.strip().splitlines()) == 1


def test_humaneval_needs_a_checkpoint_or_samples(capsys):
    assert main(["humaneval", "--limit", "1"]) == 2
    assert "needs --checkpoint DIR (to decode) or --score SAMPLES.jsonl" in capsys.readouterr().err


CHATML = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def test_the_instruct_format_frames_with_the_chat_template_and_cuts_at_the_fence(
    toy, make_model, capsys, tmp_path, monkeypatch
):
    """Prompts go through dlm.core.chat's framing; only the closing fence ends a completion (the
    raw stop strings would cut a script after its imports), and the report says which format."""
    from dlm.core.chat import code_instruct_prompt
    from dlm.decoding import evaluation

    tok = ByteTokenizer().as_hf()
    tok.chat_template = CHATML
    model = make_model(vocab_size=tok.vocab_size, mask_token_id=tok.mask_id, max_seq_len=512)
    checkpoint = save_checkpoint(model, tok, tmp_path / "chat")
    seen = []
    run_decoders = evaluation.Evaluation.run

    def spy(self, model, prompts, *args, **kwargs):
        seen.extend(prompts)
        stop = kwargs["stop"]
        assert stop(list(b"import math\ndef f(x):\n    return x\n")) is False  # raw stops would end it
        assert stop(list(b"def f(x):\n    return x\n```")) is True
        return run_decoders(self, model, prompts, *args, **kwargs)

    monkeypatch.setattr(evaluation.Evaluation, "run", spy)
    args = ["humaneval", "--checkpoint", str(checkpoint), "--problems", toy["problems"], "--limit", "2"]
    code = main(
        [*args, "--prompt-format", "instruct", "--max-new-tokens", "6", "--output", str(tmp_path / "out")]
    )
    assert code == 0, capsys.readouterr().err
    want = [tok.encode(code_instruct_prompt(tok, p["prompt"])) for p in PROBLEMS[:2]]
    assert seen == want
    report = json.loads((tmp_path / "out" / "humaneval.json").read_text())
    assert report["settings"]["prompt_format"] == "instruct"


def test_the_instruct_format_needs_a_chat_template(toy, capsys):
    code, out = run(toy, capsys, "--decoder", "ar", "--prompt-format", "instruct", "--limit", "1")
    assert code == 2 and out.err.count("\n") == 1
    assert "the byte tokenizer has no chat template" in out.err
