"""The lm-eval adapter offline: local JSONL tasks through dlm-eval lm-eval, likelihoods against a
one-position-at-a-time reference, generate_until against the batch loop, refusals and bad input."""

import functools
import json
import os

import pytest
import torch
import torch.nn.functional as F

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

pytest.importorskip("lm_eval", reason="the [eval] extra (lm-eval) is not installed")

from lm_eval.api.instance import Instance  # noqa: E402

from dlm.attention import Causal  # noqa: E402
from dlm.core import ByteTokenizer, save_checkpoint  # noqa: E402
from dlm.core.checkpoint import TrainingRecord  # noqa: E402
from dlm.decoding import SelfSpeculativeDecoder  # noqa: E402
from dlm.decoding.evaluation import decode_interleaved  # noqa: E402
from dlm.decoding.tasks.cli import main  # noqa: E402
from dlm.decoding.tasks.humaneval import cut  # noqa: E402
from dlm.decoding.tasks.lm_eval_adapter import DLMEvalLM  # noqa: E402

GEN = """task: dlm_toy_gen
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: generate_until
doc_to_text: "{{{{question}}}}"
doc_to_target: "{{{{answer}}}}"
generation_kwargs:
  until: ["\\n", "."]
  max_gen_toks: 6
metric_list:
  - metric: exact_match
"""

CHOICE = """task: dlm_toy_choice
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{question}}}}"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: "{{{{label}}}}"
metric_list:
  - metric: acc
"""

DOCS = [
    {"question": "2 + 2 =", "answer": " 4", "choices": [" 4", " 5", " 22"], "label": 0},
    {"question": "The sky is", "answer": " blue", "choices": [" blue", " green"], "label": 0},
    {"question": "ab", "answer": "c", "choices": ["c", "cd"], "label": 1},
]


@pytest.fixture(autouse=True)
def only_local_tasks(monkeypatch):
    """Index only the include path: indexing lm-eval's 228 built-in task folders takes ~40 s here."""
    import lm_eval.tasks

    monkeypatch.setattr(
        lm_eval.tasks, "TaskManager", functools.partial(lm_eval.tasks.TaskManager, include_defaults=False)
    )


@pytest.fixture(scope="module")
def setup(make_model, tmp_path_factory):
    root = tmp_path_factory.mktemp("lm-eval")
    tok = ByteTokenizer()
    model = make_model(vocab_size=tok.vocab_size, mask_token_id=tok.mask_id, max_seq_len=128)
    data = root / "toy.jsonl"
    data.write_text("".join(json.dumps(d) + "\n" for d in DOCS))
    tasks = root / "tasks"
    tasks.mkdir()
    (tasks / "gen.yaml").write_text(GEN.format(data=data))
    (tasks / "choice.yaml").write_text(CHOICE.format(data=data))
    conversion = ("conversion", TrainingRecord(module="ConversionModule", block_size=4))
    paths = {
        name: str(save_checkpoint(model, tok, root / name, training=record))
        for name, record in [("tri-mode", None), conversion]
    }
    return {"tasks": str(tasks), "model": model, **paths}


def evaluate(setup, capsys, *extra, checkpoint="tri-mode"):
    args = [
        "lm-eval",
        "--checkpoint",
        setup[checkpoint],
        "--include-path",
        setup["tasks"],
        "--dtype",
        "float64",
    ]
    code = main([*args, "--k", "2", "--batch-size", "2", *extra])
    return code, capsys.readouterr()


@pytest.mark.slow
def test_local_tasks_run_offline_through_the_cli(setup, capsys):
    code, out = evaluate(
        setup, capsys, "--tasks", "dlm_toy_gen", "dlm_toy_choice", "--decoder", "self-spec", "--json"
    )
    assert code == 0, out.err
    assert "dlm_toy_gen" in out.out and "dlm_toy_choice" in out.out and "exact_match" in out.out
    lines = out.out.strip().splitlines()
    assert lines[-2].startswith("| self-spec | ") and any(
        line.startswith("| decoder | TPF") for line in lines
    )
    record = json.loads(lines[-1])
    assert set(record["lm_eval"]) == {"dlm_toy_gen", "dlm_toy_choice"}
    assert 0 < record["decoders"]["self-spec"]["tokens"] <= 3 * 6


@torch.no_grad()
def reference_logprob(model, context, continuation):
    """sum log p(token | everything before it), one full forward per position, no padding."""
    total, greedy, seq = 0.0, True, list(context)
    for token in continuation:
        x = torch.tensor([seq])
        logits = model(x, torch.arange(len(seq))[None], Causal())[0, -1].double()
        logits[model.config.mask_token_id] = float("-inf")
        logp = F.log_softmax(logits, -1)
        total += float(logp[token])
        greedy &= int(logp.argmax()) == token
        seq.append(token)
    return total, greedy


def instance(kind, args):
    return Instance(request_type=kind, doc={}, arguments=args, idx=0)


def test_loglikelihoods_equal_the_reference(setup):
    lm = DLMEvalLM(setup["tri-mode"], dtype="float64", batch_size=2)
    tok = ByteTokenizer()
    pairs = [("2 + 2 =", " 4"), ("The sky is", " blue and wide"), ("a", "b"), ("", "xyz")]
    got = lm.loglikelihood([instance("loglikelihood", p) for p in pairs])
    for (context, continuation), (score, greedy) in zip(pairs, got, strict=True):
        ctx = tok.encode(context) if context else [tok.eos_id]
        want, want_greedy = reference_logprob(lm.model, ctx, tok.encode(continuation))
        assert score == pytest.approx(want, abs=1e-9) and greedy == want_greedy
    text = "hello, rolling world"
    (rolling,) = lm.loglikelihood_rolling([instance("loglikelihood_rolling", (text,))])
    assert rolling == pytest.approx(reference_logprob(lm.model, [tok.eos_id], tok.encode(text))[0], abs=1e-9)


def test_generate_until_is_the_batch_loop_cut_at_the_task_stops(setup):
    lm = DLMEvalLM(setup["tri-mode"], dtype="float64", decoder="self-spec", k=2, batch_size=2)
    tok = ByteTokenizer()
    decoder = SelfSpeculativeDecoder(k=2, eos_id=tok.eos_id)
    free, _ = decode_interleaved({"free": decoder}, lm.model, [tok.encode("ab")], 8, 1)["free"]
    text = tok.decode(free[0])
    stop = text[3]  # a character the free output reaches, so the stop cuts it
    requests = [
        instance("generate_until", ("ab", {"until": [stop], "max_gen_toks": 8})),
        instance("generate_until", ("ab", {"until": [], "max_gen_toks": 8})),
        instance("generate_until", ("The sky is", {"until": [stop], "max_gen_toks": 8})),
    ]
    got = lm.generate_until(requests)
    assert got[0] == cut(text, [stop]) and len(got[0]) <= 3
    assert got[1] == text
    assert lm.stats.rows == 3 and lm.stats.tokens < 3 * 8


def test_a_conversion_checkpoint_refuses_likelihoods(setup, capsys):
    code, out = evaluate(setup, capsys, "--tasks", "dlm_toy_choice", checkpoint="conversion")
    assert code == 2
    assert "was trained by ConversionModule (diffusion only): it has no exact AR likelihood" in out.err


def test_an_unknown_task_is_one_clear_error(setup, capsys):
    code, out = evaluate(setup, capsys, "--tasks", "no_such_task")
    assert code == 2
    assert out.err.strip() == (
        f"dlm-eval: error: unknown lm-eval task 'no_such_task': not among lm-eval's tasks or in {setup['tasks']}"
    )


def test_unknown_model_args_are_refused(setup):
    with pytest.raises(ValueError, match="unknown dlm model_args key 'blocksize'"):
        DLMEvalLM(setup["tri-mode"], blocksize=4)


@pytest.mark.slow
def test_a_registry_task_runs_offline_on_local_data(setup, capsys, monkeypatch):
    """lm-eval's own `wikitext` task (loglikelihood_rolling; word/byte perplexity and bits per byte,
    computed offline) on held-out documents of the embedded stdlib-code corpus instead of its hub
    dataset. Indexes lm-eval's whole registry (~40 s)."""
    monkeypatch.undo()  # the registry, not only the include path
    code, out = evaluate(
        setup, capsys, "--tasks", "wikitext", "--data", "stdlib-code", "--data-field", "page", "--limit", "2",
        "--json",
    )  # fmt: skip
    assert code == 0, out.err
    results = json.loads(out.out.strip().splitlines()[-1])["lm_eval"]["wikitext"]
    assert results["bits_per_byte,none"] > 0 and results["word_perplexity,none"] > 1


def test_local_data_replaces_one_task_only(setup, capsys):
    code, out = evaluate(setup, capsys, "--tasks", "dlm_toy_gen", "dlm_toy_choice", "--data", "stdlib-code")
    assert code == 2 and "--data replaces one task's dataset" in out.err
