"""Tri-mode with a draft adapter: the frozen base keeps AR exact, the no-grad clean prefix equals
the joint [x_t ; x_0] forward, and the export writes the model whole and the adapter alone."""

import copy

import lightning.pytorch as pl
import pytest
import torch

from dlm.attention import Causal
from dlm.core import load_model
from dlm.core.adapter import DraftAdapter, adapter_parameters, load_adapter
from dlm.core.checkpoint import set_training, training_of
from dlm.core.masking import Uniform
from dlm.training import Architecture, PackedTextDataModule, TriModeModule
from dlm.training.callbacks import ExportCheckpoint
from dlm.training.patterns import CausalCleanPattern

TINY = Architecture(dim=32, n_layers=2, n_heads=2, max_seq_len=64)
ADAPTER = DraftAdapter(targets=("q", "v", "o", "down"), rank=4, alpha=8.0)


def module(**kwargs):
    torch.manual_seed(0)
    out = TriModeModule(architecture=TINY, block_size=8, corruption=Uniform(), adapter=ADAPTER, **kwargs)
    with torch.no_grad():  # a trained adapter: a new one is zero
        for parameter in adapter_parameters(out.model).values():
            parameter.add_(torch.randn_like(parameter) * 0.2)
    return out


def batch(n=2, length=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, 256, (n, length), generator=g)
    return {
        "tokens": tokens,
        "doc_ids": (torch.arange(length) >= 20).long().expand(n, -1),
        "index": torch.arange(n),
    }


@pytest.mark.parametrize("documents", [False, True])
def test_the_frozen_clean_prefix_equals_the_joint_forward(documents):
    model = module().model.double()
    b = batch()
    noisy = b["tokens"].masked_fill(torch.rand(2, 32, generator=torch.Generator().manual_seed(1)) < 0.5, 258)
    doc_ids = b["doc_ids"] if documents else None
    pattern = CausalCleanPattern()
    joint = pattern.hidden(model, noisy, b["tokens"], 8, doc_ids, draft=True)
    noisy_h, clean_h = pattern.hidden_over_frozen_clean(model, noisy, b["tokens"], 8, doc_ids)
    torch.testing.assert_close(torch.cat([noisy_h, clean_h], 1), joint)
    assert not clean_h.requires_grad
    grads = []
    for hidden in (joint[:, :32], noisy_h):
        model.zero_grad()
        hidden.pow(2).sum().backward(retain_graph=True)
        grads.append({n: p.grad.clone() for n, p in adapter_parameters(model).items()})
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name])


def test_training_moves_the_adapter_only_and_ar_stays_the_base():
    trained = module()
    base = copy.deepcopy(trained.model)
    optimizer = torch.optim.AdamW([p for p in trained.parameters() if p.requires_grad], lr=1e-2)
    before = {n: p.detach().clone() for n, p in adapter_parameters(trained.model).items()}
    for step in range(3):
        out = trained.objective(batch(seed=step), epoch=step)
        optimizer.zero_grad()
        out["loss"].backward()
        optimizer.step()
    assert all(not torch.equal(p, before[n]) for n, p in adapter_parameters(trained.model).items())
    tokens = batch(seed=9)["tokens"]
    pos = torch.arange(32).expand(2, -1)
    for name, parameter in base.named_parameters():
        if name not in before:
            assert torch.equal(dict(trained.model.named_parameters())[name], parameter), name
    assert torch.equal(trained.model(tokens, pos, Causal()), base(tokens, pos, Causal()))


def test_fit_exports_the_model_whole_and_the_adapter_alone(tmp_path, corpus_dir, cache_dir):
    trained = module()
    dm = PackedTextDataModule(str(corpus_dir), seq_len=32, batch_size=2, cache_dir=cache_dir)
    trainer = pl.Trainer(
        max_steps=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        callbacks=[ExportCheckpoint(str(tmp_path / "model"))],
        default_root_dir=tmp_path,
    )
    trainer.fit(trained, datamodule=dm)
    whole, _ = load_model(tmp_path / "model")
    assert whole.adapter == ADAPTER
    base = copy.deepcopy(whole)
    for layer in base.layers:
        layer.attn.adapters.clear()
        layer.mlp.adapters.clear()
    base.adapter, base.mask_embedding = None, None
    set_training(base, None)
    load_adapter(base, tmp_path / "model" / "adapter")
    assert training_of(base) == training_of(whole) and training_of(base).block_size is not None
    tokens = batch()["tokens"]
    pos = torch.arange(32).expand(2, -1)
    gate = torch.ones_like(tokens)
    assert torch.equal(base(tokens, pos, Causal(), draft=gate), whole(tokens, pos, Causal(), draft=gate))
