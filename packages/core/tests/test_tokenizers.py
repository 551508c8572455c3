import pytest

from dlm.core import ByteTokenizer, HFTokenizer


def test_byte_tokenizer_round_trips_utf8_and_skips_specials():
    tok = ByteTokenizer()
    ids = tok.encode("héllo ✓")
    assert all(0 <= i < 256 for i in ids)
    assert tok.decode(ids + [tok.eos_id, tok.mask_id]) == "héllo ✓"
    assert len({tok.pad_id, tok.eos_id, tok.mask_id, tok.bos_id}) == 4
    assert max(tok.pad_id, tok.eos_id, tok.mask_id, tok.bos_id) < tok.vocab_size


def test_missing_tokenizer_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="tokenizer file not found"):
        HFTokenizer.from_directory(tmp_path)
