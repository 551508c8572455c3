"""Next-token cross-entropy on clean tokens."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


class AutoregressiveLoss:
    """mean over positions i < L-1 of CE(logits[i], tokens[i+1]) (AR logits always predict the next
    token, whatever the model's token shift). With `loss_mask` (batch, L) only the targets tokens[i+1]
    it marks count (answer tokens of self-distilled data), and the mean is over them."""

    def __call__(self, logits: Tensor, tokens: Tensor, loss_mask: Tensor | None = None) -> Tensor:
        if logits.shape[:2] != tokens.shape:
            raise ValueError(
                f"logits {tuple(logits.shape)} do not match tokens {tuple(tokens.shape)} in (batch, length)"
            )
        if loss_mask is None:
            pred = logits[:, :-1].reshape(-1, logits.shape[-1]).float()
            return F.cross_entropy(pred, tokens[:, 1:].reshape(-1))
        rows, pos = loss_mask[:, 1:].nonzero(as_tuple=True)
        if not len(rows):
            return logits.sum() * 0.0
        return F.cross_entropy(logits[rows, pos].float(), tokens[rows, pos + 1])
