"""Fixed-shape forwards over a KV cache, compiled: one graph serves every decode step of a width.

A cached forward normally changes shape as the cache fills (keys [0, max(length) + width)) and
carries Python values (the slots, the mask's prefix lengths); torch.compile guards on all of them
and would recompile at every step. CompiledForward attends over the cache's whole preallocated
buffers instead, with the mask padded to them (`Mask.padded`: every key past the used ones hidden),
and takes the slots as a tensor (`FixedView`), so the steps of one (batch, width) run one graph.
The draft adapter's gate is an input too: an adapter model always gets one (zero on the tokens that
are no drafts, which gives the base's values exactly), so its draft and verify forwards of one
width share a graph. Callers that vary the width pad it to a few sizes (dlm.decoding's Stream).

Compiling costs seconds to minutes per graph; `compile_seconds` keeps that time apart. Where
compiling fails (no C++ compiler for inductor, an unsupported op) it says so in one line and runs
the same forward eagerly from then on.
"""

from __future__ import annotations

import time
import warnings
import weakref

import torch
from torch import Tensor, nn

from dlm.attention import Mask
from dlm.core.adapter import has_adapter
from dlm.core.cache import FixedView, KVCache

# torch.compile's modes; "reduce-overhead" adds CUDA graphs on GPUs (on CPU it compiles as "default").
MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def fixed_forward(
    model: nn.Module,
    tokens: Tensor,
    positions: Tensor,
    mask: Tensor,
    k: list[Tensor],
    v: list[Tensor],
    index: Tensor,
    draft: Tensor | None,
) -> Tensor:
    """The logits of model(tokens, positions) writing K/V into slots `index` of each layer's buffers
    k[layer], v[layer] and attending over all of them with the padded mask (rows, 1, width, max_len)."""
    return model(tokens, positions, mask, cache=FixedView(k, v, index), commit=False, draft=draft)


class CompiledForward:
    """`model(tokens, positions, mask, cache, commit, draft)` at fixed shapes, compiled; the same
    logits as the cached forward (up to the kernels' rounding) and the same cache afterwards.

    Args:
        model: the Transformer.
        mode: one of MODES, torch.compile's mode.
    """

    def __init__(self, model: nn.Module, mode: str = "default") -> None:
        if mode not in MODES:
            raise ValueError(f"compile mode must be one of {', '.join(MODES)}, got {mode!r}")
        # Every model, width, batch and cache length compiles the one function fixed_forward: with
        # dynamo's default limit of 8 graphs per function the ninth would run eagerly, silently.
        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
        self.model = model
        self.compiled = torch.compile(fixed_forward, dynamic=False, mode=None if mode == "default" else mode)
        self.shapes: set[tuple] = set()
        self.compile_seconds = 0.0
        self.failed: str | None = None

    def __call__(
        self,
        tokens: Tensor,
        positions: Tensor,
        mask: Mask,
        cache: KVCache,
        commit: bool,
        draft: Tensor | None,
    ) -> Tensor:
        width = tokens.shape[1]
        index = cache.slot_index(width)
        dense = mask.padded(width, max(cache.lengths) + width, cache.max_len, tokens.device)
        if not has_adapter(self.model):
            draft = None  # only an adapter reads the gate: one graph whatever the layout marks
        elif draft is None:
            draft = torch.zeros_like(tokens, dtype=torch.bool)
        args = (self.model, tokens, positions, dense, cache.k, cache.v, index, draft)
        shape = (tuple(tokens.shape), tokens.device.type, cache.dtype, cache.max_len, draft is None)
        if self.failed is not None:
            logits = fixed_forward(*args)
        elif shape in self.shapes:
            logits = self.compiled(*args)
        else:
            logits = self._first(shape, args)
        if commit:
            cache.advance(width)
        return logits

    def _first(self, shape: tuple, args: tuple) -> Tensor:
        """The first call of a shape compiles: timed apart; a failure falls back to eager for good."""
        start = time.perf_counter()
        try:
            logits = self.compiled(*args)
        except Exception as err:  # inductor's failures have many types; eager re-raises real errors
            self.failed = " ".join(str(err).split())[:200]
            warnings.warn(f"torch.compile failed ({self.failed}); decoding eagerly", stacklevel=3)
            return fixed_forward(*args)
        self.compile_seconds += time.perf_counter() - start
        self.shapes.add(shape)
        return logits


_BY_MODEL: weakref.WeakKeyDictionary[nn.Module, dict[str, CompiledForward]] = weakref.WeakKeyDictionary()


def compiled_forward(model: nn.Module, mode: str = "default") -> CompiledForward:
    """The model's CompiledForward for `mode`, made once: later decodes reuse its graphs."""
    per_mode = _BY_MODEL.setdefault(model, {})
    if mode not in per_mode:
        per_mode[mode] = CompiledForward(model, mode)
    return per_mode[mode]
