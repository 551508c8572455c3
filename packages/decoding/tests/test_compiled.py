"""Every decoder with compile on (dlm.core.compiled: fixed-shape forwards over the whole cache, the
widths padded to powers of two) gives the tokens it gives eagerly, in float64 so there are no near
ties, greedy and sampled, with and without a draft adapter; and one graph serves every step of a
width. The fast tests trace with dynamo's eager backend (the fixed-shape path, the padding, the
gate and the graph reuse, in seconds); the slow one compiles with inductor, as decoding does."""

import pytest
import torch
from adapters import with_adapter

from dlm.core.compiled import compiled_forward
from dlm.decoding import (
    ARDecoder,
    BlockDiffusionDecoder,
    DrafterSpeculativeDecoder,
    FusedSelfSpeculativeDecoder,
    SelfSpeculativeDecoder,
)

DECODERS = {
    "ar": lambda drafter, **c: ARDecoder(**c),
    "ar-sampled": lambda drafter, **c: ARDecoder(temperature=1.0, top_k=8, **c),
    "self-spec": lambda drafter, **c: SelfSpeculativeDecoder(k=3, **c),
    "self-spec-sampled": lambda drafter, **c: SelfSpeculativeDecoder(k=3, temperature=1.0, **c),
    "fused": lambda drafter, **c: FusedSelfSpeculativeDecoder(k=3, **c),
    "quadratic": lambda drafter, **c: FusedSelfSpeculativeDecoder(k=3, quadratic=True, **c),
    "block": lambda drafter, **c: BlockDiffusionDecoder(block_size=4, threshold=0.5, **c),
    "drafter": lambda drafter, **c: DrafterSpeculativeDecoder(drafter, k=3, **c),
}
PROMPTS = [[3, 1, 4, 1, 5, 9, 2], [6], [5, 3, 5], [8, 9, 7, 9, 3]]


@pytest.fixture
def traced(monkeypatch):
    """torch.compile with dynamo's eager backend: the same graphs and guards, no inductor."""
    torch._dynamo.reset()
    compile = torch.compile
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: compile(fn, backend="eager", dynamic=False))


@pytest.mark.parametrize("adapter", [False, True], ids=["base", "adapter"])
@pytest.mark.parametrize("name", list(DECODERS))
def test_every_decoder_gives_its_eager_tokens_compiled(traced, make_model, name, adapter):
    model = make_model(token_shift=name != "drafter")
    model = with_adapter(model) if adapter else model
    drafter = make_model(seed=3)
    want, _ = DECODERS[name](drafter, compile=False).generate(model, PROMPTS, 12)
    got, stats = DECODERS[name](drafter, compile=True).generate(model, PROMPTS, 12)
    assert got == want
    assert stats.compile_seconds > 0 and len(compiled_forward(model).shapes) >= 1


@pytest.mark.parametrize("name", ["ar", "self-spec"])
def test_one_graph_serves_every_step_of_a_width(traced, make_model, name):
    # AR feeds width 1 and self-speculation width k + 1 at every step, an adapter model's draft and
    # verify forwards alike (its gate is an input): a recompile would mean a step's Python values
    # (lengths, slots, the mask's prefix) leaked into the graph. Longer prompts of the same batch
    # reuse it too: the cache's length is rounded up.
    model = with_adapter(make_model())
    torch._dynamo.config.error_on_recompile = True
    try:
        DECODERS[name](None, compile=True).generate(model, PROMPTS, 16)
        DECODERS[name](None, compile=True).generate(model, [p + [1, 2, 3] for p in PROMPTS], 20)
    finally:
        torch._dynamo.config.error_on_recompile = False
    assert len(compiled_forward(model).shapes) == 1


def test_compile_defaults_to_the_device(traced, make_model):
    model = make_model()
    assert (
        ARDecoder().compile_mode(model) is None and ARDecoder(compile=True).compile_mode(model) == "default"
    )
    ARDecoder().generate(model, PROMPTS, 4)
    assert not compiled_forward(model).shapes  # off on CPU unless asked


def test_a_compile_mode_reaches_torch_compile(monkeypatch, make_model):
    modes = []
    compile = torch.compile
    monkeypatch.setattr(
        torch,
        "compile",
        lambda fn, **kw: modes.append(kw["mode"]) or compile(fn, backend="eager", dynamic=False),
    )
    torch._dynamo.reset()
    model = make_model()
    want, _ = ARDecoder().generate(model, PROMPTS, 4)
    got, _ = ARDecoder(compile="reduce-overhead").generate(model, PROMPTS, 4)
    assert got == want and modes == ["reduce-overhead"]
    assert compiled_forward(model, "reduce-overhead").shapes and not compiled_forward(model).shapes


def test_a_bad_compile_setting_is_one_line():
    with pytest.raises(
        ValueError,
        match=r"^compile must be True, False, None \(the device's default\) or a "
        r"torch.compile mode \(default, reduce-overhead, max-autotune, "
        r"max-autotune-no-cudagraphs\), got 'yes'$",
    ):
        ARDecoder(compile="yes")
    with pytest.raises(ValueError, match=r"^compile mode must be one of .*, got 'fast'$"):
        compiled_forward(torch.nn.Linear(1, 1), "fast")


def test_a_failing_compile_says_so_once_and_decodes_eagerly(monkeypatch, make_model):
    model = make_model()

    def broken(fn, **kw):
        def run(*args):
            raise RuntimeError("no C++ compiler\nfor inductor")

        return run

    monkeypatch.setattr(torch, "compile", broken)
    want, _ = ARDecoder().generate(model, PROMPTS, 6)
    with pytest.warns(
        UserWarning, match=r"^torch.compile failed \(no C\+\+ compiler for inductor\); decoding eagerly$"
    ):
        got, _ = ARDecoder(compile=True).generate(model, PROMPTS, 6)
    assert got == want


@pytest.mark.slow  # inductor compiles a few graphs: about a minute
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_inductor_compiled_decoding_gives_the_eager_tokens(make_model, dtype):
    torch._dynamo.reset()
    model = with_adapter(make_model(dtype=dtype))
    for name in ("ar", "self-spec"):
        want, _ = DECODERS[name](None, compile=False).generate(model, PROMPTS, 12)
        got, _ = DECODERS[name](None, compile=True).generate(model, PROMPTS, 12)
        assert got == want, name


def test_compile_time_is_reported_apart(traced, make_model):
    from dlm.decoding.metrics import decode_metrics, decode_table

    model = make_model()
    runs = {
        "ar": ARDecoder().generate(model, PROMPTS, 6),
        "compiled": ARDecoder(compile=True).generate(model, PROMPTS, 6),
    }
    metrics = decode_metrics(runs, None, None, "ar")
    assert metrics["compiled/compile_s"] > 0 and "ar/compile_s" not in metrics
    assert "| compile s |" in decode_table(list(runs), metrics, "ar")
