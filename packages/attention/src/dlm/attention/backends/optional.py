"""The one place that probes optional kernels. Each probe runs once and returns None when the kernel
can be used here, else the reason it cannot; backends report that reason instead of failing."""

from __future__ import annotations

import functools
import importlib
import importlib.util


@functools.cache
def xformers_missing() -> str | None:
    if importlib.util.find_spec("xformers") is None:
        return "xformers is not installed (pip install 'dlm-attention[xformers]' with a CUDA torch)"
    try:
        importlib.import_module("xformers.ops")
    except ImportError as err:  # installed for another torch or CUDA build: say which way it broke
        return f"xformers is installed but xformers.ops does not import: {err}"
    return None


@functools.cache
def flex_missing() -> str | None:
    if importlib.util.find_spec("torch.nn.attention.flex_attention") is None:
        import torch

        return f"torch {torch.__version__} has no torch.nn.attention.flex_attention (needs torch >= 2.5)"
    return None
