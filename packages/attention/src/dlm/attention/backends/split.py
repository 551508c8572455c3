"""The x_t (+) x_0 training masks without the dense 2L x 2L pass.

Queries are cut into chunks of whole blocks, in both halves of [x_t ; x_0]. A chunk of noisy queries
(blocks b0..b1-1) gathers the clean keys of blocks < b1-1 and its own noisy blocks; a chunk of clean
queries gathers the clean keys up to its end. A small pattern over the chunk's last keys enforces the
exact rule inside the chunk (strictly earlier clean blocks and the same noisy block; block-causal or
token-causal clean keys), and a SameDocument mask ANDed to the pattern is applied per chunk from the
document ids. So noisy queries never score against other noisy blocks nor against clean blocks at or
after their own, and clean queries never score against the noisy half: about a quarter of the dense
pass's scores, plus the chunk-diagonal pieces, computed by the chunked engine (exact softmax, own
backward). Chunk rows are chosen so one chunk's score tile stays under `score_budget` elements.

L need not be a multiple of B: the last block is shorter, exactly as the mask's definition says.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor

from dlm.attention.backends.base import Backend
from dlm.attention.backends.chunked import Chunk, Part, RowMask, chunked_attention
from dlm.attention.masks import And, BlockDiffusion, Mask, SameDocument, TriMode


class Split(Backend):
    name = "split"
    devices = frozenset({"cpu", "cuda"})
    dtypes = frozenset({torch.float16, torch.bfloat16, torch.float32, torch.float64})
    masks = (BlockDiffusion, TriMode)

    def __init__(self, score_budget: int = 1 << 19, min_auto_work: int = 1 << 21) -> None:
        #: Elements of one chunk's score tile (batch x heads x rows x L): the memory/speed knob.
        self.score_budget = score_budget
        #: Dispatch picks split by itself only from batch x heads x L^2 = this on. Below, the whole
        #: dense pass is small and one fused SDPA call beats split's per-chunk kernels.
        self.min_auto_work = min_auto_work

    def mask_reason(self, mask: Mask) -> str | None:
        if _parse(mask) is not None:
            return None
        return f"split runs BlockDiffusion / TriMode, alone or AND SameDocument masks; got {mask}"

    def auto_reasons(self, q: Tensor, k: Tensor, v: Tensor, mask: Mask) -> list[str]:
        pattern, _ = _parse(mask)
        work = q.shape[0] * q.shape[1] * pattern.seq_len**2
        if work >= self.min_auto_work:
            return []
        return [
            f"batch*heads*L^2 = {work} < {self.min_auto_work}: too small for split to beat dense SDPA "
            f"(force it with backend='split')"
        ]

    def describe(self) -> str:
        return (
            "masks: BlockDiffusion, TriMode (each optionally AND SameDocument); "
            f"chosen by itself from batch*heads*L^2 >= {self.min_auto_work}"
        )

    def forward(self, q: Tensor, k: Tensor, v: Tensor, mask: Mask) -> Tensor:
        pattern, documents = _parse(mask)
        length, block = pattern.seq_len, pattern.block_size
        rows = self.chunk_rows(q.shape[0] * q.shape[1], length, block)
        chunks = _plan(isinstance(pattern, TriMode), length, block, rows, q.device)
        row_mask = _same_document([d.doc_ids.to(q.device) for d in documents]) if documents else None
        return chunked_attention(q, k, v, chunks, row_mask)

    def chunk_rows(self, batch_heads: int, length: int, block: int) -> int:
        """Query rows per chunk: whole blocks, as many as keep a score tile (about batch_heads x rows
        x L) under the budget, at least one block."""
        fit = self.score_budget // max(1, batch_heads * length)
        return max(1, fit // block) * block


def _parse(mask: Mask) -> tuple[BlockDiffusion, tuple[SameDocument, ...]] | None:
    """(the x_t (+) x_0 pattern, the document masks ANDed to it), or None when split cannot run it."""
    if isinstance(mask, BlockDiffusion):
        return mask, ()
    if not isinstance(mask, And):
        return None
    patterns = [p for p in mask.parts if isinstance(p, BlockDiffusion)]
    documents = tuple(p for p in mask.parts if isinstance(p, SameDocument))
    if len(patterns) != 1 or len(documents) + 1 != len(mask.parts):
        return None
    return patterns[0], documents


@functools.lru_cache(maxsize=32)
def _plan(clean_causal: bool, length: int, block: int, rows: int, device: torch.device) -> tuple[Chunk, ...]:
    """Chunks covering all 2L queries. Positions: noisy j at j, clean j at L + j."""
    L = length

    def arange(start: int, end: int) -> Tensor:
        return torch.arange(start, end, device=device)

    def part(start: int, end: int, allowed_tail: Tensor) -> Part:
        blocked = ~allowed_tail
        return Part(start, end, blocked if bool(blocked.any()) else None)

    chunks = []
    for s in range(0, L, rows):
        e = min(L, s + rows)
        jq = arange(s, e).unsqueeze(1)
        # Clean keys strictly before the chunk's last block (those before s: visible to every row),
        # then the chunk's own noisy blocks.
        clean_end = (e - 1) // block * block
        parts = []
        if clean_end > 0:
            parts.append(part(L, L + clean_end, arange(s, clean_end) // block < jq // block))
        parts.append(part(s, e, arange(s, e) // block == jq // block))
        chunks.append(Chunk(s, e, tuple(parts)))
        jk = arange(s, e)
        tail = jk <= jq if clean_causal else jk // block <= jq // block
        chunks.append(Chunk(L + s, L + e, (part(L, L + e, tail),)))
    return tuple(chunks)


def _same_document(doc_ids: list[Tensor]) -> RowMask:
    def visible(chunk: Chunk, part: Part) -> Tensor:
        allowed = None
        for ids in doc_ids:
            same = ids[:, chunk.start : chunk.end, None] == ids[:, None, part.start : part.end]
            allowed = same if allowed is None else allowed & same
        return allowed[:, None, None]

    return visible
