import pytest
import torch
import torch.nn.functional as F

from dlm.attention import Causal
from dlm.core import ModelConfig, Transformer


def test_heads_not_divisible_is_a_clear_error():
    with pytest.raises(ValueError, match="n_heads=6 must be divisible by n_kv_heads=4"):
        ModelConfig(vocab_size=10, dim=48, n_heads=6, n_kv_heads=4)


def test_unknown_config_field_is_named():
    with pytest.raises(ValueError, match=r"unknown ModelConfig fields \['hidden_size'\]"):
        ModelConfig.from_dict({"vocab_size": 10, "hidden_size": 3})


def test_gqa_matches_repeated_kv_heads():
    """A GQA model equals the MHA model whose k/v projections repeat each kv head."""
    torch.manual_seed(0)
    gqa = Transformer(ModelConfig(vocab_size=30, dim=32, n_layers=1, n_heads=4, n_kv_heads=2))
    mha = Transformer(ModelConfig(vocab_size=30, dim=32, n_layers=1, n_heads=4, n_kv_heads=4))
    state = gqa.state_dict()
    for name in ("layers.0.attn.k.weight", "layers.0.attn.v.weight"):
        w = state[name].view(2, 8, 32)
        state[name] = w.repeat_interleave(2, dim=0).reshape(32, 32)
    mha.load_state_dict(state)
    tokens = torch.randint(0, 30, (2, 9))
    pos = torch.arange(9).expand(2, -1)
    torch.testing.assert_close(gqa(tokens, pos, Causal()), mha(tokens, pos, Causal()), atol=1e-5, rtol=1e-5)


def test_add_mask_token_grows_vocab_with_mean_row():
    torch.manual_seed(0)
    model = Transformer(ModelConfig(vocab_size=20, dim=16, n_layers=1, n_heads=2, tie_embeddings=False))
    mean = model.embed.weight.detach().mean(0)
    model.add_mask_token(20)
    assert model.config.vocab_size == 21 and model.config.mask_token_id == 20
    torch.testing.assert_close(model.embed.weight[20], mean)
    assert model.lm_head.weight.shape == (21, 16)
    out = model(torch.tensor([[20, 3]]), torch.arange(2).unsqueeze(0), Causal())
    assert out.shape == (1, 2, 21)


def test_tied_model_keeps_sharing_after_growth():
    model = Transformer(ModelConfig(vocab_size=20, dim=16, n_layers=1, n_heads=2))
    model.add_mask_token(20)
    assert model.lm_head.weight is model.embed.weight


def test_trains_from_scratch_on_a_repeated_pattern():
    """The default init learns a periodic sequence to near-zero loss in a few hundred steps."""
    torch.manual_seed(0)
    model = Transformer(ModelConfig(vocab_size=16, dim=32, n_layers=2, n_heads=4))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    seq = torch.tensor([[3, 1, 4, 1, 5, 9, 2, 6] * 4])
    pos = torch.arange(seq.shape[1]).unsqueeze(0)
    for _ in range(150):
        logits = model(seq[:, :-1], pos[:, :-1], Causal())
        loss = F.cross_entropy(logits.flatten(0, 1), seq[:, 1:].flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.35
