import dataclasses

import pytest

from dlm.core import ModelConfig
from dlm.training import Architecture
from dlm.training.optim import lr_factor


def test_architecture_mirrors_model_config():
    ours = {f.name for f in dataclasses.fields(Architecture)}
    theirs = {f.name for f in dataclasses.fields(ModelConfig)} - {"mask_token_id", "extra"}
    assert ours == theirs


def test_build_takes_vocab_from_tokenizer_and_defaults_from_model_config():
    config = Architecture(dim=64, n_heads=2).build(260)
    assert config == ModelConfig(vocab_size=260, dim=64, n_heads=2)
    assert Architecture(vocab_size=300).build(260).vocab_size == 300
    with pytest.raises(ValueError, match="vocab_size=100 is smaller than the tokenizer's 260"):
        Architecture(vocab_size=100).build(260)


def test_apply_overrides_behaviour_and_refuses_other_changes():
    ckpt = ModelConfig(vocab_size=260, dim=64, n_heads=2)
    assert Architecture(token_shift=False, max_seq_len=64).apply(ckpt, "x") == ckpt.replace(
        token_shift=False, max_seq_len=64
    )
    assert Architecture(dim=64).apply(ckpt, "x") == ckpt
    with pytest.raises(
        ValueError, match=r"ck: the checkpoint has dim=64 but the config sets architecture.dim=128"
    ):
        Architecture(dim=128).apply(ckpt, "ck")
    with pytest.raises(ValueError, match="the checkpoint has vocab_size=260"):
        Architecture(vocab_size=300).apply(ckpt, "ck")


def test_warmup_then_cosine_to_min_ratio():
    assert lr_factor(0, 10, 110, 0.1) == pytest.approx(0.1)
    assert lr_factor(9, 10, 110, 0.1) == pytest.approx(1.0)
    assert lr_factor(60, 10, 110, 0.1) == pytest.approx(0.55)
    assert lr_factor(110, 10, 110, 0.1) == pytest.approx(0.1)
    assert lr_factor(500, 10, 110, 0.1) == pytest.approx(0.1)


def test_apply_keeps_the_first_layers_and_refuses_more():
    ckpt = ModelConfig(vocab_size=260, dim=64, n_heads=2, n_layers=6)
    assert Architecture(n_layers=2).apply(ckpt, "x") == ckpt.replace(n_layers=2)
    assert Architecture(n_layers=6).apply(ckpt, "x") == ckpt
    with pytest.raises(
        ValueError,
        match=r"ck: the checkpoint has n_layers=6 but the config sets architecture.n_layers=8; only 1 to 6 "
        r"\(its first blocks\) can be kept",
    ):
        Architecture(n_layers=8).apply(ckpt, "ck")
    with pytest.raises(ValueError, match="sets architecture.n_layers=0; only 1 to 6"):
        Architecture(n_layers=0).apply(ckpt, "ck")
