"""The draft adapter: PEFT's LoRA where it acts, the base model exactly where it does not, saved
alone and refused on another base."""

import copy
import json

import pytest
import torch

from dlm.attention import Causal
from dlm.core import ModelConfig, Transformer
from dlm.core.adapter import (
    DraftAdapter,
    adapter_parameters,
    add_adapter,
    base_fingerprint,
    freeze_base,
    load_adapter,
    save_adapter,
)

CONFIG = ModelConfig(vocab_size=40, dim=32, n_layers=2, n_heads=4, n_kv_heads=2, mask_token_id=39)
ALL = ("q", "k", "v", "o", "gate", "up", "down")


def base(dtype=torch.float32, seed=0):
    torch.manual_seed(seed)
    return Transformer(CONFIG).to(dtype)


def adapted(model, targets=ALL, mask_embedding=True):
    """`model` with an adapter whose deltas are random (a new one is zero and changes nothing)."""
    add_adapter(model, DraftAdapter(targets=targets, rank=4, alpha=8.0, mask_embedding=mask_embedding))
    with torch.no_grad():
        for parameter in adapter_parameters(model).values():
            parameter.add_(torch.randn_like(parameter) * 0.3)
    return model


def inputs(length=9, rows=2):
    tokens = torch.randint(0, 39, (rows, length), generator=torch.Generator().manual_seed(1))
    tokens[:, -3:] = CONFIG.mask_token_id
    return tokens, torch.arange(length).expand(rows, -1)


def test_a_new_adapter_changes_nothing():
    model = base()
    reference = copy.deepcopy(model)
    add_adapter(model, DraftAdapter(targets=ALL))
    tokens, pos = inputs()
    torch.testing.assert_close(
        model(tokens, pos, Causal(), draft=torch.ones_like(tokens)), reference(tokens, pos, Causal())
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_unmarked_tokens_get_the_base_logits_exactly(dtype):
    reference = base(dtype)
    model = adapted(copy.deepcopy(reference))
    tokens, pos = inputs()
    want = reference(tokens, pos, Causal())
    assert torch.equal(model(tokens, pos, Causal()), want)
    assert torch.equal(model(tokens, pos, Causal(), draft=torch.zeros_like(tokens)), want)
    # gate the last token only: under the causal mask every earlier token is the base's
    gate = torch.zeros_like(tokens)
    gate[:, -1] = 1
    got = model(tokens, pos, Causal(), draft=gate)
    assert torch.equal(got[:, :-1], want[:, :-1])
    assert not torch.allclose(got[:, -1], want[:, -1])


def test_marked_tokens_get_peft_lora():
    peft = pytest.importorskip("peft")
    reference = base()
    ours = adapted(copy.deepcopy(reference), mask_embedding=False)
    theirs = peft.get_peft_model(
        copy.deepcopy(reference),
        peft.LoraConfig(r=4, lora_alpha=8, target_modules=list(ALL), lora_dropout=0.0),
    )
    with torch.no_grad():  # copy our deltas into PEFT's lora_A / lora_B
        for name, module in theirs.base_model.model.named_modules():
            if hasattr(module, "lora_A") and "default" in module.lora_A:
                owner_name, attr = name.rsplit(".", 1)
                delta = ours.get_submodule(owner_name).adapters[attr]
                module.lora_A["default"].weight.copy_(delta.down.weight)
                module.lora_B["default"].weight.copy_(delta.up.weight)
    tokens, pos = inputs()
    got = ours(tokens, pos, Causal(), draft=torch.ones_like(tokens))
    torch.testing.assert_close(got, theirs(tokens, pos, Causal()), atol=1e-5, rtol=1e-5)


def test_the_mask_embedding_is_input_only_and_the_base_is_frozen():
    model = base()
    head = model.lm_head.weight.detach().clone()
    adapted(model, targets=("o",))
    freeze_base(model)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == set(adapter_parameters(model)) and "mask_embedding" in trainable
    tokens, pos = inputs()
    model(tokens, pos, Causal(), draft=torch.ones_like(tokens)).sum().backward()
    assert model.mask_embedding.grad is not None and model.embed.weight.grad is None
    assert torch.equal(model.lm_head.weight, head)


def test_an_adapter_saves_alone_and_loads_only_onto_its_base(tmp_path):
    reference = base()
    model = adapted(copy.deepcopy(reference))
    save_adapter(model, tmp_path / "adapter", command="dlm fit ...")
    assert {p.name for p in (tmp_path / "adapter").iterdir()} == {"adapter.json", "adapter.safetensors"}
    again = copy.deepcopy(reference)
    assert base_fingerprint(again) == base_fingerprint(model)
    load_adapter(again, tmp_path / "adapter")
    tokens, pos = inputs()
    gate = torch.ones_like(tokens)
    assert torch.equal(again(tokens, pos, Causal(), draft=gate), model(tokens, pos, Causal(), draft=gate))
    other = base(seed=1)
    with pytest.raises(
        ValueError, match=r"adapter: the adapter was trained on base [0-9a-f]{16}, not this model"
    ):
        load_adapter(other, tmp_path / "adapter")
    with pytest.raises(FileNotFoundError, match=r"nowhere: no adapter.json \(not a dlm draft adapter\)$"):
        load_adapter(base(), tmp_path / "nowhere")


def test_an_adapter_carries_the_layout_it_was_trained_for(tmp_path):
    # An HF base has no training record: the adapter's tells decoders which block it drafts.
    from dlm.core.checkpoint import TrainingRecord, training_of

    reference = base()
    record = TrainingRecord("TriModeModule", block_size=8, clean="causal")
    save_adapter(adapted(copy.deepcopy(reference)), tmp_path / "adapter", training=record)
    again = copy.deepcopy(reference)
    assert training_of(again) is None
    load_adapter(again, tmp_path / "adapter")
    assert training_of(again) == record
    meta = json.loads((tmp_path / "adapter" / "adapter.json").read_text())
    meta["training"] = {"module": "TriModeModule", "block_size": "8"}
    (tmp_path / "adapter" / "adapter.json").write_text(json.dumps(meta))
    with pytest.raises(
        ValueError, match=r"adapter.json: the 'training' record's block_size must be int, got '8'$"
    ):
        load_adapter(copy.deepcopy(reference), tmp_path / "adapter")


def test_bad_adapter_settings_are_one_line():
    with pytest.raises(
        ValueError,
        match=r"^adapter targets must be distinct names among q, k, v, o, gate, up, down, got \['o_proj'\]$",
    ):
        DraftAdapter(targets=("o_proj",))
    with pytest.raises(ValueError, match=r"^adapter rank must be a positive integer, got 0$"):
        DraftAdapter(rank=0)
    with pytest.raises(ValueError, match=r"^the model already has a draft adapter$"):
        adapted(adapted(base()))
    with pytest.raises(ValueError, match=r"^draft \(2, 3\) must have the tokens' shape \(2, 9\)$"):
        tokens, pos = inputs()
        base()(tokens, pos, Causal(), draft=torch.ones(2, 3))


def test_a_whole_checkpoint_keeps_its_adapter(tmp_path):
    from dlm.core import ByteTokenizer, load_model, save_checkpoint

    model = adapted(base())
    save_checkpoint(model, ByteTokenizer(), tmp_path / "model")
    loaded, _ = load_model(tmp_path / "model")
    assert loaded.adapter == model.adapter
    tokens, pos = inputs()
    gate = torch.ones_like(tokens)
    assert torch.equal(loaded(tokens, pos, Causal(), draft=gate), model(tokens, pos, Causal(), draft=gate))
