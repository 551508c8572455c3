"""Next-token cross-entropy on clean tokens."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


class AutoregressiveLoss:
    """mean over positions i < L-1 of CE(logits[i], tokens[i+1]) (AR logits always predict the next
    token, whatever the model's token shift)."""

    def __call__(self, logits: Tensor, tokens: Tensor) -> Tensor:
        if logits.shape[:2] != tokens.shape:
            raise ValueError(
                f"logits {tuple(logits.shape)} do not match tokens {tuple(tokens.shape)} in (batch, length)"
            )
        pred = logits[:, :-1].reshape(-1, logits.shape[-1]).float()
        return F.cross_entropy(pred, tokens[:, 1:].reshape(-1))
