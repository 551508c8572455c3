"""The drafter experiment end to end: a drafter trained on a counting target is fully accepted by
DrafterSpeculativeDecoder, and the tiny pipeline (pretrain target, pretrain drafter, dlm-distill, drafter
fit + test) runs through the real command lines with fast_dev_run."""

import json
from pathlib import Path

import pytest
import torch

from dlm.core import ByteTokenizer, ModelConfig, Transformer, save_checkpoint
from dlm.core.losses import ChainLoss, DrafterLossMix, UniformCE
from dlm.decoding import ARDecoder, DrafterSpeculativeDecoder
from dlm.training import Architecture, DrafterModule
from dlm.training.cli import main as dlm
from dlm.training.drafter.distill import main as dlm_distill

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "apps/drafter/configs"


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def counting(g, batch, length, modulus=16):
    """x_i = (start + i) mod 16: the counting target's greedy continuation of any count."""
    start = torch.randint(0, modulus, (batch, 1), generator=g)
    return (start + torch.arange(length)) % modulus


def counting_target(modulus=16, scale=30.0):
    """An AR model that counts, built by hand: attention and MLP write nothing, token x < 16 embeds
    to the basis vector e_x, and the head maps e_x to the logit of x + 1 mod 16."""
    config = ModelConfig(vocab_size=260, dim=32, n_layers=1, n_heads=2, max_seq_len=64, tie_embeddings=False)
    model = Transformer(config)
    with torch.no_grad():
        model.layers[0].attn.o.weight.zero_()
        model.layers[0].mlp.down.weight.zero_()
        model.embed.weight[:modulus] = torch.eye(modulus, 32)
        model.lm_head.weight.zero_()
        for x in range(modulus):
            model.lm_head.weight[(x + 1) % modulus, x] = scale
    return model.eval()


@pytest.mark.slow  # trains a drafter: ~10-30 s on a shared CPU
def test_a_drafter_of_a_counting_target_is_fully_accepted(tmp_path):
    target_path = save_checkpoint(counting_target(), ByteTokenizer(), tmp_path / "target")
    torch.manual_seed(0)
    module = DrafterModule(
        target=str(target_path),
        architecture=Architecture(dim=32, n_layers=2, n_heads=4, max_seq_len=64),
        block_size=4,
        loss=DrafterLossMix([UniformCE(), ChainLoss()]),
    )
    opt = torch.optim.AdamW(module.model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(1)
    for _ in range(120):
        x = counting(g, 16, 32)
        loss = module.objective({"tokens": x, "doc_ids": torch.zeros_like(x), "index": torch.arange(32)})[0]
        opt.zero_grad()
        loss.backward()
        opt.step()
    target, drafter = module.target.model, module.model.eval()
    prompts = [[1, 2, 3], [9], [7, 8, 9, 10, 11, 12], [14, 15]]
    ar, _ = ARDecoder().generate(target, prompts, 20)
    assert ar[0][:4] == [4, 5, 6, 7] and ar[3][:3] == [0, 1, 2]  # the target counts
    tokens, stats = DrafterSpeculativeDecoder(drafter, k=3).generate(target, prompts, 20)
    assert tokens == ar
    assert stats.acceptance_by_position == [1.0, 1.0, 1.0]
    _, stats = DrafterSpeculativeDecoder(drafter, k=3, temperature=1.0).generate(target, prompts, 20)
    assert min(stats.acceptance_by_position) > 0.8  # q is less sharp than argmax: some samples miss


def test_a_speculative_decoder_without_a_drafter_is_a_clear_error():
    model = Transformer(ModelConfig(vocab_size=260, dim=32, n_layers=1, n_heads=2, max_seq_len=64))
    with pytest.raises(ValueError, match="DrafterSpeculativeDecoder has no drafter"):
        DrafterSpeculativeDecoder(k=3).generate(model, [[1, 2]], 4)


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A temporary working directory with a small local corpus, a private token cache and wandb offline."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DLM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb"))
    docs = [{"id": f"d{i}", "text": f"def f{i}(x):\n    return x * {i} + {i % 7}\n" * 40} for i in range(60)]
    (tmp_path / "corpus.jsonl").write_text("\n".join(json.dumps(d) for d in docs) + "\n")
    return tmp_path


@pytest.mark.slow
def test_tiny_drafter_pipeline_fast_dev_run(workdir):
    fractions = {"validation_fraction": "0.2", "test_fraction": "0.2"}
    corpus = ["--data.init_args.corpus", "corpus.jsonl"]
    corpus += [a for k, v in fractions.items() for a in (f"--data.init_args.{k}", v)]
    fast = ["--trainer.fast_dev_run", "true", "--trainer.logger", "false"]
    dlm(["fit", "--config", str(ROOT / "apps/pretrain/configs/tiny.yaml"), *corpus, *fast])
    dlm(["fit", "--config", str(CONFIGS / "pretrain-drafter.yaml"), *corpus, *fast])
    assert (workdir / "runs/pretrain-tiny/model/dlm.json").is_file()
    assert (workdir / "runs/pretrain-drafter/model/dlm.json").is_file()
    samples = json.dumps({"train": 16, "validation": 8, "test": 8})
    dlm_distill(["--config", str(ROOT / "apps/drafter/distill/tiny.yaml"), "--corpus", "corpus.jsonl",
                 "--samples", samples, "--batch_size", "16", "--progress", "false",
                 *[a for k, v in fractions.items() for a in (f"--{k}", v)]])  # fmt: skip
    decode = [
        "--model.init_args.evaluation.init_args.prompts",
        "2",
        "--model.init_args.evaluation.init_args.max_new_tokens",
        "8",
    ]
    dlm(["fit", "--config", str(CONFIGS / "tiny.yaml"), *decode, *fast])
    exported = workdir / "runs/drafter-tiny/model"
    assert json.loads((exported / "dlm.json").read_text())["model"]["mask_token_id"] == 258
    report = json.loads((workdir / "runs/drafter-tiny/drafter_eval.json").read_text())["decoders"]
    assert set(report) == {"greedy", "sampled"} and report["greedy"]["tau"] >= 1.0
    assert (workdir / "runs/drafter-tiny/acceptance.png").is_file()
    dlm(
        [
            "test",
            "--config",
            str(CONFIGS / "tiny.yaml"),
            "--model.init_args.init_from",
            str(exported),
            *decode,
            *fast,
        ]
    )
    # bad input: a drafter for another target's data
    other = ["--model.init_args.target", "runs/pretrain-drafter/model"]
    with pytest.raises(SystemExit) as exit_info:
        dlm(["fit", "--config", str(CONFIGS / "tiny.yaml"), *other, *fast])
    assert "was made by the target runs/pretrain-tiny/model" in exit_info.value.code
    with pytest.raises(SystemExit) as exit_info:
        dlm(["fit", "--config", str(CONFIGS / "tiny.yaml"), "--model.init_args.k", "8", *fast])
    assert exit_info.value.code.startswith("dlm: error: ValueError: k=8 draft positions do not fit")
