"""Bad HF input gets one clear error each (the checkpoints come from our own to_hf, no transformers)."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from dlm.core import ByteTokenizer, ModelConfig, Transformer, from_hf, to_hf
from dlm.core.tokenizers import HFTokenizer


def exported(tmp_path, **flags):
    config = ModelConfig(vocab_size=260, dim=32, n_layers=1, n_heads=4, n_kv_heads=2, **flags)
    return to_hf(Transformer(config), ByteTokenizer(), tmp_path / "hf")


def edit_config(directory, **changes):
    cfg = json.loads((directory / "config.json").read_text())
    cfg.update(changes)
    (directory / "config.json").write_text(json.dumps(cfg))


def test_unknown_model_type_is_named_with_the_supported_ones(tmp_path):
    directory = exported(tmp_path)
    edit_config(directory, model_type="gpt2")
    with pytest.raises(
        ValueError, match="unsupported model_type 'gpt2'; supported: llama, mistral, qwen2, qwen3"
    ):
        from_hf(directory)


def test_missing_shard_is_named(tmp_path):
    directory = exported(tmp_path)
    state = load_file(str(directory / "model.safetensors"))
    names = sorted(state)
    (directory / "model.safetensors").unlink()
    save_file({n: state[n] for n in names[:3]}, str(directory / "model-00001-of-00002.safetensors"))
    weight_map = {n: f"model-0000{1 + (i >= 3)}-of-00002.safetensors" for i, n in enumerate(names)}
    (directory / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    with pytest.raises(FileNotFoundError, match="shard model-00002-of-00002.safetensors named in"):
        from_hf(directory)


def test_no_weights_at_all(tmp_path):
    directory = exported(tmp_path)
    (directory / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="no model.safetensors or model.safetensors.index.json"):
        from_hf(directory)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda state: state.pop("model.layers.0.mlp.up_proj.weight"),
            "missing weight 'layers.0.mlp.up.weight'",
        ),
        # a name with no counterpart is reported as the checkpoint spells it
        (
            lambda state: state.update({"model.layers.0.self_attn.o_proj.bias": torch.zeros(32)}),
            "unexpected weight 'model.layers.0.self_attn.o_proj.bias'",
        ),
    ],
    ids=["missing", "unexpected"],
)
def test_missing_or_unexpected_weight_is_named(tmp_path, edit, message):
    directory = exported(tmp_path)
    state = load_file(str(directory / "model.safetensors"))
    edit(state)
    save_file(state, str(directory / "model.safetensors"))
    with pytest.raises(ValueError, match=message):
        from_hf(directory)


def test_mismatched_shape_is_named(tmp_path):
    directory = exported(tmp_path)
    edit_config(directory, intermediate_size=96)
    with pytest.raises(
        ValueError, match=r"weight 'layers\.0\.mlp\.\w+\.weight' has shape \(\d+, \d+\), the config needs"
    ):
        from_hf(directory)


def test_corrupt_safetensors(tmp_path):
    directory = exported(tmp_path)
    (directory / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        from_hf(directory)


def test_missing_tokenizer_file(tmp_path):
    directory = exported(tmp_path)
    (directory / "tokenizer.json").unlink()
    with pytest.raises(FileNotFoundError, match="no tokenizer.json; pass tokenizer=False"):
        from_hf(directory)


def test_missing_config(tmp_path):
    with pytest.raises(FileNotFoundError, match="no config.json"):
        from_hf(tmp_path)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"rope_parameters": {"rope_type": "yarn", "factor": 4.0}}, "rope type 'yarn' is not supported"),
        ({"hidden_act": "gelu"}, "hidden_act 'gelu' is not supported"),
        ({"attention_bias": True}, "attention_bias=true adds biases our model lacks"),
        ({"partial_rotary_factor": 0.5}, "partial_rotary_factor=0.5 is not supported"),
        ({"hidden_size": None}, "config.json lacks 'hidden_size'"),
        ({"dtype": "int8"}, "dtype 'int8' is not a torch floating-point dtype"),
        ({"rope_parameters": {"rope_type": "llama3", "factor": 8.0}}, "llama3 rope parameters lack"),
    ],
)
def test_unsupported_config_values(tmp_path, changes, message):
    directory = exported(tmp_path)
    edit_config(directory, rope_scaling=None, **changes)
    with pytest.raises(ValueError, match=message):
        from_hf(directory)


def test_tokenizer_larger_than_the_embedding(tmp_path):
    directory = exported(tmp_path)
    edit_config(directory, vocab_size=200)
    with pytest.raises(ValueError, match="the tokenizer has 260 tokens but the model's vocab_size is 200"):
        from_hf(directory)


def test_export_refuses_a_family_that_cannot_hold_the_model(tmp_path):
    model = Transformer(ModelConfig(vocab_size=260, dim=32, n_layers=1, n_heads=4, qk_norm=True))
    model.config = model.config.replace(extra={"model_type": "llama"})
    with pytest.raises(ValueError, match="cannot be written as 'llama'"):
        to_hf(model, ByteTokenizer(), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_export_refuses_a_tokenizer_the_model_cannot_embed(tmp_path):
    model = Transformer(ModelConfig(vocab_size=100, dim=32, n_layers=1, n_heads=4))
    with pytest.raises(
        ValueError, match="the tokenizer has 260 tokens, more than the model's vocab_size 100"
    ):
        to_hf(model, ByteTokenizer(), tmp_path / "out")
    with pytest.raises(TypeError, match="needs a ByteTokenizer or HFTokenizer"):
        to_hf(model, object(), tmp_path / "out")


def test_export_refuses_a_mask_token_mismatch(tmp_path):
    model = Transformer(ModelConfig(vocab_size=260, dim=32, n_layers=1, n_heads=4, mask_token_id=3))
    with pytest.raises(ValueError, match="mask_token_id is 3 but the tokenizer's mask token is 258"):
        to_hf(model, ByteTokenizer(), tmp_path / "out")


def test_a_failed_export_leaves_the_old_directory(tmp_path):
    directory = exported(tmp_path)
    before = sorted(p.name for p in directory.iterdir())

    class Broken(HFTokenizer):
        def save(self, directory):
            raise OSError("disk full")

    hf_tok = ByteTokenizer().as_hf()
    broken = Broken(hf_tok.tok, hf_tok.eos_id, hf_tok.pad_id, hf_tok.bos_id, hf_tok.mask_id)
    model = Transformer(ModelConfig(vocab_size=260, dim=32, n_layers=1, n_heads=4))
    with pytest.raises(OSError, match="disk full"):
        to_hf(model, broken, directory)
    assert sorted(p.name for p in directory.iterdir()) == before
    assert [p.name for p in tmp_path.iterdir()] == ["hf"]
