"""Same-document attention for packed sequences: allowed(q, k) = doc[b, q] == doc[b, k].

Packing several documents into one row must not let a token see another document. Combine this mask
with a pattern by AND, e.g. `BlockDiffusion(B, L) & SameDocument.for_noisy_clean(doc_ids)`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from dlm.attention.masks.base import Mask


# eq=False keeps object identity as equality and hash. The ids are data, new every batch: hashing by
# content would read the whole tensor (a device sync on GPU) on every lookup, and caching by content
# would almost never hit. Identity is cheap and can never confuse two different batches while both
# are alive; kernels do not cache this mask at all (cacheable = False), so a recycled id() of a
# freed tensor cannot bring back a stale dense mask either.
@dataclass(frozen=True, eq=False)
class SameDocument(Mask):
    doc_ids: Tensor
    cacheable = False

    def __post_init__(self) -> None:
        ids = self.doc_ids
        if not isinstance(ids, Tensor) or ids.dim() != 2:
            shape = tuple(ids.shape) if isinstance(ids, Tensor) else type(ids).__name__
            raise ValueError(f"SameDocument needs doc_ids of shape (batch, length), got {shape}")
        if ids.dtype.is_floating_point or ids.dtype.is_complex or ids.dtype == torch.bool:
            raise ValueError(f"SameDocument needs integer doc_ids, got dtype {ids.dtype}")
        object.__setattr__(self, "rows", ids.shape[0])

    @classmethod
    def for_noisy_clean(cls, doc_ids: Tensor) -> SameDocument:
        """The mask for an [x_t ; x_0] layout: both halves carry the same L document ids."""
        if not isinstance(doc_ids, Tensor) or doc_ids.dim() != 2:
            raise ValueError(f"doc_ids must be (batch, L), got {getattr(doc_ids, 'shape', doc_ids)}")
        return cls(torch.cat([doc_ids, doc_ids], dim=1))

    @property
    def length(self) -> int:
        return self.doc_ids.shape[1]

    def check(self, q_len: int, kv_len: int) -> None:
        # Queries may be the first q_len tokens alone: TriModeNoisy's noisy half over [x_0 ; x_t],
        # where both halves carry the same ids.
        if not 0 < q_len <= self.length or kv_len != self.length:
            raise ValueError(
                f"{self} covers {self.length} keys and at most as many queries, got q_len={q_len}, kv_len={kv_len}"
            )

    def mask_mod(self, b: Tensor, h: Tensor, q: Tensor, kv: Tensor) -> Tensor:
        ids = self.doc_ids.to(q.device)
        return ids[b, q] == ids[b, kv]

    def __str__(self) -> str:
        return f"SameDocument(rows={self.rows}, length={self.length})"
