import pytest
import torch
from tokenizers import Tokenizer, models

from dlm.attention import Causal
from dlm.core import ByteTokenizer, HFTokenizer, ModelConfig, Transformer, save_checkpoint, to_hf
from dlm.training import Architecture, ARLanguageModel, ConversionModule
from dlm.training.initialization import ensure_mask_token, load_initial

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


def test_n_layers_keeps_the_first_blocks_exactly(tmp_path):
    """The truncated model's logits equal a model built by hand from the first two blocks."""
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=260, dim=32, n_layers=4, n_heads=2, max_seq_len=64, tie_embeddings=False)
    full = Transformer(config)
    directory = save_checkpoint(full, ByteTokenizer(), tmp_path / "ar")
    cut = ARLanguageModel(init_from=str(directory), architecture=Architecture(n_layers=2)).model
    reference = Transformer(config.replace(n_layers=2))
    with torch.no_grad():
        reference.embed.weight.copy_(full.embed.weight)
        reference.norm.weight.copy_(full.norm.weight)
        reference.lm_head.weight.copy_(full.lm_head.weight)
        for i in range(2):
            reference.layers[i].load_state_dict(full.layers[i].state_dict())
    tokens, positions = torch.randint(0, 256, (2, 16)), torch.arange(16)[None].expand(2, -1)
    assert cut.config.n_layers == 2 and len(cut.layers) == 2
    logits = cut(tokens, positions, Causal())
    torch.testing.assert_close(logits, reference(tokens, positions, Causal()), rtol=0, atol=0)
    assert not torch.equal(logits, full(tokens, positions, Causal()))  # the cut changed the model
    with pytest.raises(
        ValueError, match="the checkpoint has n_layers=4 but the config sets architecture.n_layers=5"
    ):
        ARLanguageModel(init_from=str(directory), architecture=Architecture(n_layers=5))


def test_mask_token_reuses_an_existing_row(tmp_path):
    vocab = {f"t{i}": i for i in range(29)} | {"<unused>": 29, "<eos>": 30}
    tok = HFTokenizer(Tokenizer(models.WordLevel(vocab, unk_token="t0")), eos_id=30)
    model = Transformer(ModelConfig(vocab_size=31, dim=32, n_layers=1, n_heads=2, max_seq_len=64))
    loaded, own = load_initial(str(to_hf(model, tok, tmp_path / "hf")))
    ensure_mask_token(loaded, own, add_mask_token=True, mask_token="<unused>")
    assert own.mask_id == 29 == loaded.config.mask_token_id
    assert loaded.config.vocab_size == 31 == own.vocab_size
    keep = [i for i in range(31) if i != 29]
    torch.testing.assert_close(loaded.embed.weight[29], model.embed.weight[keep].mean(0))
    torch.testing.assert_close(loaded.embed.weight[keep], model.embed.weight[keep])
    with pytest.raises(ValueError, match="mask_token '<unused>' needs a tokenizer with named tokens"):
        ensure_mask_token(
            Transformer(ModelConfig(260, dim=32, n_layers=1, n_heads=2)), ByteTokenizer(), True, "<unused>"
        )
