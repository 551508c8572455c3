"""HF import/export against transformers on tiny random models built from a config (no downloads)."""

import json
import logging
import subprocess
import sys

import pytest
import torch

from dlm.attention import Causal
from dlm.core import ByteTokenizer, ModelConfig, Transformer, from_hf, load_model, to_hf

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

FAMILIES = ("llama", "qwen2", "qwen3", "mistral")
WORDS = 40  # tokenizer size; the model's vocab_size is larger unless a test says otherwise
VOCAB = 48
TOL = 1e-4


def hf_model(family, tied, vocab=VOCAB, seed=0, **overrides):
    """A tiny transformers model with every weight random (norms around 1, biases non-zero)."""
    sizes = dict(
        vocab_size=vocab,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=tied,
        max_position_embeddings=256,
    )
    if family == "qwen3":
        sizes["head_dim"] = 16  # not hidden_size // heads, so head_dim handling is exercised
    config = transformers.AutoConfig.for_model(family, **{**sizes, **overrides})
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.normal_(1.0 if "norm" in name else 0.0, 0.3)
    return model


def save_tokenizer(directory, words=WORDS, mask=False):
    """A WordLevel tokenizer.json (<unk>, <eos>, w2.., optionally <|mask|>) and its tokenizer_config."""
    names = ["<unk>", "<eos>"] + [f"w{i}" for i in range(2, words)]
    if mask:
        names[-1] = "<|mask|>"
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(dict(zip(names, range(words))), unk_token="<unk>"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    tok.add_special_tokens(["<eos>"] + (["<|mask|>"] if mask else []))
    tok.save(str(directory / "tokenizer.json"))
    (directory / "tokenizer_config.json").write_text(json.dumps({"eos_token": "<eos>", "unk_token": "<unk>"}))


def saved(tmp_path, family, tied, sharded=False, name="hf", **kwargs):
    model = hf_model(family, tied, **kwargs)
    directory = tmp_path / name
    model.save_pretrained(directory, max_shard_size="20KB" if sharded else "10GB")
    save_tokenizer(directory)
    return model, directory


def tokens(n=24, vocab=WORDS, batch=2, seed=1):
    return torch.randint(0, vocab, (batch, n), generator=torch.Generator().manual_seed(seed))


def ours(model, ids):
    positions = torch.arange(ids.shape[1]).expand(ids.shape[0], -1)
    with torch.no_grad():
        return model(ids, positions, Causal())


def theirs(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
@pytest.mark.parametrize("sharded", [False, True], ids=["single", "sharded"])
def test_logits_match_transformers(tmp_path, family, tied, sharded):
    hf, directory = saved(tmp_path, family, tied, sharded)
    if sharded:
        assert (directory / "model.safetensors.index.json").is_file()
    model, _ = from_hf(directory, add_mask_token=False)
    assert model.config.extra["model_type"] == family
    assert (model.lm_head.weight is model.embed.weight) == tied
    ids = tokens()
    diff = (ours(model, ids) - theirs(hf, ids)).abs().max().item()
    print(
        f"{family} {'tied' if tied else 'untied'} {'sharded' if sharded else 'single'}: max |dlogit| {diff:.2e}"
    )
    assert diff < TOL


def assert_mean_row(weight, row):
    others = torch.cat([weight[:row], weight[row + 1 :]])
    torch.testing.assert_close(weight[row], others.mean(0))


@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
def test_mask_token_reuses_an_unused_row(tmp_path, tied):
    hf, directory = saved(tmp_path, "qwen3", tied)
    model, tok = from_hf(directory)
    assert tok.mask_id == model.config.mask_token_id == WORDS
    assert model.config.vocab_size == VOCAB
    assert tok.encode("w5 <|mask|> w7") == [5, WORDS, 7]
    assert_mean_row(model.embed.weight, WORDS)
    assert_mean_row(model.lm_head.weight, WORDS)
    ids = tokens()
    keep = [i for i in range(VOCAB) if i != WORDS]
    assert (ours(model, ids)[..., keep] - theirs(hf, ids)[..., keep]).abs().max() < TOL


@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
def test_mask_token_grows_the_embedding_by_one_row(tmp_path, tied):
    hf, directory = saved(tmp_path, "llama", tied, vocab=WORDS)
    model, tok = from_hf(directory)
    assert tok.mask_id == model.config.mask_token_id == WORDS
    assert model.config.vocab_size == WORDS + 1 == tok.vocab_size
    assert (model.lm_head.weight is model.embed.weight) == tied
    assert_mean_row(model.embed.weight, WORDS)
    assert_mean_row(model.lm_head.weight, WORDS)
    ids = tokens()
    assert (ours(model, ids)[..., :WORDS] - theirs(hf, ids)).abs().max() < TOL


def test_an_existing_mask_token_is_used_as_is(tmp_path):
    hf, directory = saved(tmp_path, "mistral", False)
    save_tokenizer(directory, mask=True)
    model, tok = from_hf(directory)
    assert tok.mask_id == model.config.mask_token_id == WORDS - 1
    assert model.config.vocab_size == VOCAB
    ids = tokens()
    assert (ours(model, ids) - theirs(hf, ids)).abs().max() < TOL


def test_without_a_tokenizer_when_asked(tmp_path):
    hf, directory = saved(tmp_path, "llama", True)
    (directory / "tokenizer.json").unlink()
    model, tok = from_hf(directory, tokenizer=False)
    assert tok is None and model.config.mask_token_id is None
    ids = tokens()
    assert (ours(model, ids) - theirs(hf, ids)).abs().max() < TOL


LLAMA3 = {
    "rope_type": "llama3",
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 16,
}


def test_llama3_rope_parameters(tmp_path):
    hf, directory = saved(tmp_path, "llama", False, rope_parameters={**LLAMA3, "rope_theta": 500000.0})
    model, _ = from_hf(directory, add_mask_token=False)
    assert model.config.rope_theta == 500000.0 and model.config.rope_scaling["factor"] == 8.0
    ids = tokens(n=96)
    assert (ours(model, ids) - theirs(hf, ids)).abs().max() < TOL


def test_legacy_top_level_rope_theta_and_rope_scaling(tmp_path):
    hf, directory = saved(tmp_path, "llama", True, rope_parameters={**LLAMA3, "rope_theta": 12345.0})
    cfg = json.loads((directory / "config.json").read_text())
    del cfg["rope_parameters"]
    cfg.update(rope_theta=12345.0, rope_scaling=LLAMA3)  # transformers 4 spelling
    (directory / "config.json").write_text(json.dumps(cfg))
    model, _ = from_hf(directory, add_mask_token=False)
    assert model.config.rope_theta == 12345.0 and model.config.rope_scaling == LLAMA3
    ids = tokens(n=96)
    assert (ours(model, ids) - theirs(hf, ids)).abs().max() < TOL


def test_dtype_follows_the_checkpoint_unless_given(tmp_path):
    hf, directory = saved(tmp_path, "qwen2", False)
    assert from_hf(directory)[0].embed.weight.dtype == torch.float32
    model, _ = from_hf(directory, dtype=torch.bfloat16)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert model.inv_freq.dtype == torch.float32
    hf.to(torch.bfloat16).save_pretrained(tmp_path / "bf16")
    save_tokenizer(tmp_path / "bf16")
    assert from_hf(tmp_path / "bf16")[0].layers[0].attn.q.bias.dtype == torch.bfloat16


def test_sliding_window_is_accepted_with_a_warning(tmp_path, caplog):
    _, mistral = saved(tmp_path, "mistral", False, sliding_window=777)
    _, qwen2 = saved(tmp_path, "qwen2", False, name="qwen2", sliding_window=555)  # switched off
    _, qwen3 = saved(tmp_path, "qwen3", False, name="qwen3", sliding_window=666, use_sliding_window=True)
    with caplog.at_level(logging.WARNING, logger="dlm.core.hf.config_map"):
        from_hf(qwen2)
        assert not caplog.records
        model, _ = from_hf(mistral)
        from_hf(mistral)
        from_hf(qwen3)
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 2 and "window 777" in messages[0] and "window 666" in messages[1]
    assert model.config.extra["sliding_window"] == 777


@pytest.mark.parametrize("family", FAMILIES)
def test_export_loads_in_transformers_and_reads_back_identically(tmp_path, family):
    tied = family in ("qwen2", "mistral")
    hf, directory = saved(tmp_path, family, tied)
    model, tok = from_hf(directory)
    out = to_hf(model, tok, tmp_path / "out")
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    assert type(reloaded).__name__ == type(hf).__name__
    ids = tokens(vocab=WORDS + 1)  # the mask token included
    assert (ours(model, ids) - theirs(reloaded, ids)).abs().max() < TOL
    again, tok2 = from_hf(out)
    assert again.config == model.config
    assert again.state_dict().keys() == model.state_dict().keys()
    for name, tensor in model.state_dict().items():
        assert torch.equal(again.state_dict()[name], tensor), name
    assert tok2.mask_id == tok.mask_id and tok2.encode("w3 w9 <eos>") == tok.encode("w3 w9 <eos>")


@pytest.mark.parametrize(
    ("flags", "family"), [({}, "llama"), ({"qkv_bias": True}, "qwen2"), ({"qk_norm": True}, "qwen3")]
)
def test_export_of_a_fresh_model_with_the_byte_tokenizer(tmp_path, flags, family):
    torch.manual_seed(0)
    byte = ByteTokenizer()
    config = ModelConfig(
        vocab_size=260, dim=32, n_layers=2, n_heads=4, n_kv_heads=2, mask_token_id=258, **flags
    )
    model = Transformer(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.normal_(1.0 if "norm" in name else 0.0, 0.3)
    out = to_hf(model, byte, tmp_path / "out")
    assert json.loads((out / "config.json").read_text())["model_type"] == family
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    ids = tokens(vocab=260)
    assert (ours(model, ids) - theirs(reloaded, ids)).abs().max() < TOL
    again, tok = from_hf(out)
    assert again.config.mask_token_id == 258 and again.config.token_shift == config.token_shift
    text = "héllo ✓ wörld\n\t<eos> [MASK] <bos>\x00"
    assert tok.encode(text) == byte.encode(text)
    assert tok.decode(byte.encode(text)) == text
    hf_tok = transformers.AutoTokenizer.from_pretrained(out)
    assert hf_tok(text, add_special_tokens=False)["input_ids"] == byte.encode(text)
    assert hf_tok.convert_tokens_to_ids(["<pad>", "<eos>", "[MASK]", "<bos>"]) == [256, 257, 258, 259]
    assert (hf_tok.eos_token_id, hf_tok.mask_token_id) == (byte.eos_id, byte.mask_id)


def test_load_model_reads_an_hf_directory(tmp_path):
    hf, directory = saved(tmp_path, "qwen3", False)
    model, tok = load_model(directory)
    assert model.config.mask_token_id == tok.mask_id == WORDS


def test_dlm_core_does_not_import_transformers():
    code = "import sys, dlm.core, dlm.core.hf; print('transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
