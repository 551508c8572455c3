"""Save the global random number generators in checkpoints and restore them on resume."""

from __future__ import annotations

import random
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch


class RandomState(pl.Callback):
    """Puts the Python, NumPy, torch CPU (and current CUDA device) generator states in every
    checkpoint and restores them when training resumes from one.

    dlm's own draws (corruption, data order) are seeded by (seed, sample index, epoch) and need no
    global state; this keeps anything else that draws from the global generators (dropout, a
    user's callback) on the uninterrupted run's sequence. The states are restored when training
    starts, after the train loader's iterator was created (which draws a worker seed from the
    global generator), so the next step draws what it drew in the uninterrupted run. Only rank 0 writes checkpoints, so every
    process gets rank 0's state; under seed_everything the processes' states agree anyway. The
    `dlm` CLI adds it to every run that configures none.
    """

    def __init__(self) -> None:
        self.pending: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        kind, keys, pos, has_gauss, gauss = np.random.get_state()
        # Plain types and tensors only, so the checkpoint loads with torch.load(weights_only=True).
        state = {
            "python": random.getstate(),
            "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss)),
            "torch": torch.get_rng_state(),
        }
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.pending = state_dict

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        state, self.pending = self.pending, None
        if state is None:
            return
        random.setstate(state["python"])
        kind, keys, pos, has_gauss, gauss = state["numpy"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
        torch.set_rng_state(state["torch"])
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state(state["cuda"])
