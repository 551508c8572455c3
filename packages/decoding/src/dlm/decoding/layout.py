"""One forward's new tokens, laid out per row as segments over the KV cache, and the mask they imply.

Decoders that do several things in one forward (verify a block and draft the next; commit a finished
block and draft the next one; draft one candidate block per acceptance length) describe each row
as a list of segments. A segment is a run of new tokens at explicit positions that attends to

- the row's committed prefix in the cache,
- the first `sees` new tokens of its row (an earlier segment, e.g. the part of a verify block that a
  candidate draft block assumes accepted),
- itself: causally (verify, a causal commit) or all of it (a draft block, a block-causal commit).

A forward whose rows all hold one segment of the same width is exactly dlm.attention's `Verify`
(causal) or `Draft` (bidirectional), and the layout uses those masks; anything else uses
dlm.attention's `Segments`.
A segment may be a *draft* (a draft block, a candidate block, a block being denoised): its tokens are
marked in the forward's per-token `draft` gate, the only tokens a draft adapter acts on; verify and
commit segments are not, so they are the base model's forward exactly.
The segment that the cache keeps must come first in its row: its K/V land in the slots right after
the row's prefix, and cropping the cache keeps exactly them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from dlm.attention import Draft, Mask, Segments, Verify


@dataclass
class _Query:
    token: int
    position: int
    sees: int
    lo: int
    hi: int
    causal: bool
    draft: bool = False


class Layout:
    """Collects one forward's segments row by row, then builds its tokens, positions and mask."""

    def __init__(self, prefix_lens: list[int]) -> None:
        self.prefix_lens = list(prefix_lens)
        self.rows: list[list[_Query]] = [[] for _ in prefix_lens]

    def add(
        self, row: int, tokens: list[int], start: int, causal: bool, sees: int = 0, draft: bool = False
    ) -> int:
        """Append a segment of `tokens` at positions start, start+1, ... to `row`; return its offset
        among the row's new tokens (where its logits are). `draft` marks a draft segment."""
        queries = self.rows[row]
        offset, end = len(queries), len(queries) + len(tokens)
        queries.extend(_Query(t, start + i, sees, offset, end, causal, draft) for i, t in enumerate(tokens))
        return offset

    @property
    def width(self) -> int:
        return max(len(q) for q in self.rows)

    def build(
        self, device: torch.device, filler: int = 0, width: int | None = None
    ) -> tuple[Tensor, Tensor, Mask, Tensor | None]:
        """tokens (rows, width), positions (rows, width), the mask and the draft gate (rows, width;
        None when no segment is a draft). `width` (at least the layout's) pads every row to it.

        Rows with nothing to do (finished rows) copy the shape of a busy row, filled with `filler`, so
        a uniform forward keeps its Draft/Verify mask; shorter rows are padded with queries that see
        only the prefix and themselves. Both produce logits that nobody reads and K/V that the caller
        crops away.
        """
        if self.width == 0:
            raise ValueError("a forward needs at least one new token in some row")
        if width is not None and width < self.width:
            raise ValueError(f"cannot build a layout of width {self.width} at width {width}")
        template = next(q for q in self.rows if len(q) == self.width)
        width = self.width if width is None else width
        rows = []
        for prefix, queries in zip(self.prefix_lens, self.rows, strict=True):
            if not queries:
                queries = [
                    _Query(filler, prefix + i, t.sees, t.lo, t.hi, t.causal, t.draft)
                    for i, t in enumerate(template)
                ]
            pad = [_Query(filler, prefix + i, 0, i, i + 1, False) for i in range(len(queries), width)]
            rows.append(queries + pad)
        tokens = torch.tensor([[q.token for q in r] for r in rows], device=device)
        positions = torch.tensor([[q.position for q in r] for r in rows], device=device)
        drafts = [[q.draft for q in r] for r in rows]
        gate = torch.tensor(drafts, device=device) if any(map(any, drafts)) else None
        return tokens, positions, _mask(tuple(self.prefix_lens), rows, width), gate


def _mask(prefix_lens: tuple[int, ...], rows: list[list[_Query]], width: int) -> Mask:
    single = all(q.sees == 0 and q.lo == 0 and q.hi == width for r in rows for q in r)
    kinds = {q.causal for r in rows for q in r}
    if single and len(kinds) == 1:
        return Verify(prefix_lens, width) if kinds.pop() else Draft(prefix_lens, width)
    return Segments(
        prefix_lens,
        tuple(tuple(q.sees for q in r) for r in rows),
        tuple(tuple(q.lo for q in r) for r in rows),
        tuple(tuple(q.hi for q in r) for r in rows),
        tuple(tuple(q.causal for q in r) for r in rows),
    )
