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


def word_level(tokens):
    from tokenizers import Tokenizer, models

    vocab = {t: i for i, t in enumerate(tokens)}
    return HFTokenizer(Tokenizer(models.WordLevel(vocab, unk_token=tokens[0])), eos_id=vocab["<eos>"])


def test_an_existing_token_becomes_the_mask_without_growing_the_vocabulary():
    tok = word_level(["a", "b", "<unused>", "<eos>"])
    assert tok.use_mask_token("<unused>") == 2 == tok.mask_id
    assert tok.vocab_size == 4
    with pytest.raises(ValueError, match="mask_token '<nope>' is not a token of this tokenizer"):
        word_level(["a", "<eos>"]).use_mask_token("<nope>")
    with pytest.raises(ValueError, match=r"mask_token '<eos>' \(id 1\) is the tokenizer's eos, pad or bos"):
        word_level(["a", "<eos>"]).use_mask_token("<eos>")
    with pytest.raises(ValueError, match="already has a mask token \\('<unused>', id 2\\); mask_token 'a'"):
        tok.use_mask_token("a")


def test_the_fingerprint_follows_the_content_not_the_mask():
    from dlm.core.tokenizers import tokenizer_fingerprint

    ours, same = word_level(["a", "b", "<unused>", "<eos>"]), word_level(["a", "b", "<unused>", "<eos>"])
    same.use_mask_token("<unused>")
    assert tokenizer_fingerprint(ours) == tokenizer_fingerprint(same)
    other = word_level(["a", "c", "<unused>", "<eos>"])  # same size, another token
    assert other.vocab_size == ours.vocab_size
    assert tokenizer_fingerprint(other) != tokenizer_fingerprint(ours)
    assert tokenizer_fingerprint(ByteTokenizer()) != tokenizer_fingerprint(ours)


def test_an_appended_mask_keeps_the_fingerprint_other_added_tokens_do_not():
    from dlm.core.tokenizers import tokenizer_fingerprint

    target = word_level(["a", "b", "<eos>"])
    drafter = word_level(["a", "b", "<eos>"])
    assert drafter.add_mask_token() == 3
    assert tokenizer_fingerprint(drafter) == tokenizer_fingerprint(target)
    grown = word_level(["a", "b", "<eos>"])
    grown.tok.add_special_tokens(["<other>"])
    assert tokenizer_fingerprint(grown) != tokenizer_fingerprint(target)
    grown.add_mask_token()  # the mask is appended, but another token was added before it
    assert tokenizer_fingerprint(grown) != tokenizer_fingerprint(target)
