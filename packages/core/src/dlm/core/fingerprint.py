"""What a model computes, as a short hash: data distilled from a model, and an adapter trained on
one, record it, so a different model is refused before it trains or decodes on them."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection

import torch
from torch import nn

SAMPLE = 4096
"""Values hashed per tensor: an evenly strided sample, cheap at any size."""


def model_fingerprint(model: nn.Module, skip: Collection[str] = ()) -> str:
    """A hash of `model`'s config (how it runs and its diffusion settings left out: the attention
    backend, max_seq_len, token_shift and the mask id change nothing an AR forward computes) and, per
    state-dict tensor not in `skip`, its name, shape and a strided sample of SAMPLE values. Take it
    before a mask row is appended, so a diffusion model built from the same checkpoint matches."""
    digest = hashlib.sha256()
    runs = ("attention_backend", "max_seq_len", "token_shift", "mask_token_id")
    config = {k: v for k, v in model.config.to_dict().items() if k not in runs}
    digest.update(json.dumps(config, sort_keys=True, default=str).encode())
    with torch.no_grad():
        for name, tensor in sorted(model.state_dict().items()):
            if name in skip:
                continue
            flat = tensor.detach().reshape(-1)
            step = max(1, flat.numel() // SAMPLE)
            sample = flat[::step][:SAMPLE].to("cpu", torch.float32).contiguous()
            digest.update(f"{name}:{tuple(tensor.shape)}".encode())
            digest.update(sample.numpy().tobytes())
    return digest.hexdigest()[:16]
