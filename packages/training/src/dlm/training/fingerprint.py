"""A model's identity: a hash of its config and of a fixed sample of every weight tensor.

Distilled drafter data records the fingerprint of the target that generated it, and the drafter
module refuses data made by another target. Hashing a strided sample (up to 4096 values per tensor,
as float32) instead of every byte keeps it to a second at 8B parameters; fine-tuning moves every
weight, so any real change of the model changes the sample. The values are read as float32, so a
checkpoint gives the same fingerprint loaded in its own dtype or upcast (bf16 -> fp32 is exact);
compute it before any lossy downcast.
"""

from __future__ import annotations

import hashlib
import json

import torch

from dlm.core import Transformer

SAMPLE = 4096


def fingerprint(model: Transformer) -> str:
    digest = hashlib.sha256()
    config = {
        k: v for k, v in model.config.to_dict().items() if k not in ("attention_backend", "max_seq_len")
    }
    digest.update(json.dumps(config, sort_keys=True, default=str).encode())
    with torch.no_grad():
        for name, tensor in sorted(model.state_dict().items()):
            flat = tensor.detach().reshape(-1)
            step = max(1, flat.numel() // SAMPLE)
            sample = flat[::step][:SAMPLE].to("cpu", torch.float32).contiguous()
            digest.update(f"{name}:{tuple(tensor.shape)}".encode())
            digest.update(sample.numpy().tobytes())
    return digest.hexdigest()[:16]
