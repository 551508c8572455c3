"""A random draft adapter on a copy of a model, for the decoding tests."""

import copy

import torch

from dlm.core.adapter import DraftAdapter, adapter_parameters, add_adapter


def with_adapter(model, seed=5):
    """A copy of `model` with a random draft adapter (its deltas moved off zero, so it drafts)."""
    model = copy.deepcopy(model)
    add_adapter(model, DraftAdapter(targets=("q", "o", "up"), rank=4, alpha=8.0))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in adapter_parameters(model).values():
            parameter.add_(torch.randn(parameter.shape, generator=g, dtype=parameter.dtype) * 0.5)
    return model
