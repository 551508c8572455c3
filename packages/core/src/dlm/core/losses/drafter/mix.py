"""A weighted sum of drafter loss terms, chosen in YAML as a list of objects."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from dlm.core.losses.drafter.base import DrafterLoss, check_blocks, non_negative


class DrafterLossMix:
    """sum_j weights[j] * terms[j]: e.g. UniformCE + ChainLoss for the chain objective with early
    gradient. `parts()` also returns each term's unweighted value, for logging.

    Args:
        terms: DrafterLoss objects (class_path entries in YAML).
        weights: one non-negative weight per term; None means 1 for each.
    """

    def __init__(self, terms: Sequence[DrafterLoss], weights: Sequence[float] | None = None) -> None:
        terms = list(terms)
        if not terms:
            raise ValueError("DrafterLossMix needs at least one loss term")
        for term in terms:
            if not isinstance(term, DrafterLoss):
                raise ValueError(f"DrafterLossMix terms must be DrafterLoss objects, got {term!r}")
        weights = [1.0] * len(terms) if weights is None else list(weights)
        if len(weights) != len(terms):
            raise ValueError(f"DrafterLossMix got {len(terms)} terms but {len(weights)} weights")
        self.terms = terms
        self.weights = [non_negative("DrafterLossMix weight", w) for w in weights]
        self.names = unique_names([t.name for t in terms])

    @property
    def needs_target_logits(self) -> bool:
        return any(t.needs_target_logits for t in self.terms)

    def parts(
        self, logits: Tensor, targets: Tensor, target_logits: Tensor | None = None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """(the weighted sum, {term name: unweighted value})."""
        check_blocks(logits, targets, target_logits)
        values = {name: term(logits, targets, target_logits) for name, term in zip(self.names, self.terms)}
        total = sum(w * v for w, v in zip(self.weights, values.values(), strict=True))
        return torch.as_tensor(total), values

    def __call__(self, logits: Tensor, targets: Tensor, target_logits: Tensor | None = None) -> Tensor:
        return self.parts(logits, targets, target_logits)[0]


def unique_names(names: list[str]) -> list[str]:
    """Names with a _2, _3... suffix on repeats, so two terms of one class log apart."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name}_{seen[name]}")
    return out
