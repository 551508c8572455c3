import pytest
import torch
from tokenizers import Tokenizer, models

from dlm.core import ByteTokenizer, HFTokenizer, ModelConfig, Transformer, save_checkpoint, to_hf
from dlm.training import Architecture, ARLanguageModel, ConversionModule

TINY = Architecture(dim=32, n_layers=1, n_heads=2, max_seq_len=64)


@pytest.fixture
def ar_dir(tmp_path):
    torch.manual_seed(0)
    model = Transformer(ModelConfig(vocab_size=260, dim=32, n_layers=1, n_heads=2, max_seq_len=64))
    return save_checkpoint(model, ByteTokenizer(), tmp_path / "ar"), model


def hf_without_mask(tmp_path):
    vocab = {f"t{i}": i for i in range(30)} | {"<eos>": 30}
    tok = HFTokenizer(Tokenizer(models.WordLevel(vocab, unk_token="t0")), eos_id=30)
    model = Transformer(ModelConfig(vocab_size=31, dim=32, n_layers=1, n_heads=2, max_seq_len=64))
    return to_hf(model, tok, tmp_path / "hf"), model


def test_from_scratch_uses_the_tokenizer_vocabulary():
    module = ARLanguageModel(architecture=TINY)
    assert module.model.config.vocab_size == 260 and isinstance(module.tokenizer, ByteTokenizer)


def test_from_a_dlm_checkpoint_and_conversion_resets_the_mask_row(ar_dir):
    directory, model = ar_dir
    ar = ARLanguageModel(init_from=str(directory))
    torch.testing.assert_close(ar.model.state_dict(), model.state_dict())
    conv = ConversionModule(init_from=str(directory), block_size=4)
    assert conv.model.config.mask_token_id == ByteTokenizer.mask_id == conv.tokenizer.mask_id
    keep = [i for i in range(260) if i != 258]
    torch.testing.assert_close(conv.model.embed.weight[258], model.embed.weight[keep].mean(0))
    torch.testing.assert_close(conv.model.embed.weight[keep], model.embed.weight[keep])


def test_architecture_may_override_token_shift_but_not_shapes(ar_dir):
    directory, _ = ar_dir
    conv = ConversionModule(
        init_from=str(directory), architecture=Architecture(token_shift=False), block_size=4
    )
    assert conv.model.config.token_shift is False
    with pytest.raises(ValueError, match="the checkpoint has dim=32 but the config sets architecture.dim=64"):
        ConversionModule(init_from=str(directory), architecture=Architecture(dim=64))
    with pytest.raises(ValueError, match="the checkpoint has vocab_size=260"):
        ARLanguageModel(init_from=str(directory), architecture=Architecture(vocab_size=512))


def test_hf_directory_without_mask_token(tmp_path):
    directory, model = hf_without_mask(tmp_path)
    with pytest.raises(ValueError, match="the tokenizer has no mask token and add_mask_token is false"):
        ConversionModule(init_from=str(directory), add_mask_token=False, block_size=4)
    conv = ConversionModule(init_from=str(directory), block_size=4)
    assert conv.tokenizer.mask_id == 31 == conv.model.config.mask_token_id
    assert conv.model.config.vocab_size == 32
    torch.testing.assert_close(conv.model.embed.weight[:31], model.embed.weight)
    ar = ARLanguageModel(init_from=str(directory))
    assert ar.model.config.vocab_size == 31 and ar.tokenizer.mask_id is None


def test_bad_init_is_named(tmp_path, ar_dir):
    directory, _ = ar_dir
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ARLanguageModel(init_from=str(tmp_path / "nope"))
    with pytest.raises(ValueError, match="brings its own tokenizer"):
        ARLanguageModel(init_from=str(hf_without_mask(tmp_path)[0]), tokenizer=ByteTokenizer())
    with pytest.raises(ValueError, match="seq_len 60 is not a multiple of block_size 16"):
        ConversionModule(init_from=str(directory), block_size=16, seq_len=60)
    with pytest.raises(ValueError, match="seq_len 128 is longer than the model's max_seq_len 64"):
        ARLanguageModel(init_from=str(directory), seq_len=128)
    with pytest.raises(ValueError, match="block_size must be an integer >= 2"):
        ConversionModule(init_from=str(directory), block_size=1)
