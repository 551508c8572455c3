"""Exact attention computed one query chunk at a time, with its own backward: the split backend's engine.

A plan is a list of chunks. A chunk names its query rows and the key ranges (parts) they may see; a
part may carry a small bool pattern over its last keys (all earlier keys of the part are visible).
Scores exist for one chunk at a time, so no (queries x keys) tensor of the whole problem is ever built,
keys outside a chunk's parts cost nothing, and parts are views of k and v (no gathering copies).

The math is the flash-attention recurrence written with torch matmuls: one softmax across a chunk's
parts (shared row max and row sum, normalisation applied to the output rows), the row log-sum-exp
kept for the backward, which recomputes each part's probabilities from it and uses
dS = P * (dP - rowsum(dO * O)); no probabilities are stored between the passes. Scores and softmax
run in float32 (float64 for float64 inputs) whatever the input dtype.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True, eq=False)
class Part:
    start: int
    end: int
    #: bool (chunk rows, width): True where a row may NOT see one of the part's last `width` keys;
    #: None when the whole part is visible.
    blocked_tail: Tensor | None = None


@dataclass(frozen=True, eq=False)
class Chunk:
    start: int
    end: int
    parts: tuple[Part, ...]


#: Per-row visibility of one part for one chunk: (rows, 1, 1, chunk rows, part keys) bool, or None.
RowMask = Callable[[Chunk, Part], Tensor | None]


def chunked_attention(
    q: Tensor, k: Tensor, v: Tensor, chunks: Sequence[Chunk], row_mask: RowMask | None = None
) -> Tensor:
    """softmax(q k^T / sqrt(d) restricted to each chunk's parts) v; q (b, h, Lq, d), k/v (b, hk, Lk, d).

    h must be a multiple of hk (query head i reads key/value head i // (h // hk)). Query rows no chunk
    covers, or that see no key, come out as zeros.
    """
    if torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad):
        return _ChunkedAttention.apply(q, k, v, tuple(chunks), row_mask)
    return _forward(q, k, v, chunks, row_mask)[0]


def _acc(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _grouped(x: Tensor, hk: int) -> Tensor:
    """(b, h, L, d) as (b, hk, g, L, d): the g query heads that share one key/value head."""
    b, h, length, d = x.shape
    return x.view(b, hk, h // hk, length, d)


def _rows(x5: Tensor, start: int, end: int) -> Tensor:
    """Rows [start, end) of a (b, hk, g, L, d) tensor as (b, hk, g * rows, d)."""
    b, hk, g, _, d = x5.shape
    return x5[:, :, :, start:end].reshape(b, hk, g * (end - start), d)


def _flat(x: Tensor, start: int | None = None, end: int | None = None) -> Tensor:
    """(b, hk, n, d) -> (b * hk, n, d). With start/end: a view of rows [start, end) of a contiguous x,
    for in-place accumulation; without: a view when possible, else a copy."""
    if start is not None:
        return x[:, :, start:end].view(-1, end - start, x.shape[-1])
    return x.reshape(-1, x.shape[-2], x.shape[-1])


def _scores(qc: Tensor, k: Tensor, chunk: Chunk, part: Part, row_mask: RowMask | None, g: int) -> Tensor:
    """Masked scores of the chunk's queries (scaled by 1/sqrt(d) beforehand) against one part: (b, hk, g, rows, keys)."""
    b, hk = qc.shape[:2]
    scores = torch.matmul(qc, k[:, :, part.start : part.end].transpose(-1, -2)).to(_acc(qc.dtype))
    scores = scores.view(b, hk, g, chunk.end - chunk.start, -1)
    if part.blocked_tail is not None:
        width = part.blocked_tail.shape[1]
        scores[..., scores.shape[-1] - width :].masked_fill_(part.blocked_tail, float("-inf"))
    if row_mask is not None:
        visible = row_mask(chunk, part)
        if visible is not None:
            scores.masked_fill_(~visible, float("-inf"))
    return scores


def _forward(
    q: Tensor, k: Tensor, v: Tensor, chunks: Sequence[Chunk], row_mask: RowMask | None
) -> tuple[Tensor, Tensor]:
    b, h, length, d = q.shape
    hk = k.shape[1]
    g = h // hk
    q5, scale = _grouped(q, hk), d**-0.5
    out = torch.zeros((b, h, length, v.shape[-1]), dtype=q.dtype, device=q.device)
    out5 = _grouped(out, hk)
    lse = torch.zeros((b, hk, g, length), dtype=_acc(q.dtype), device=q.device)
    for chunk in chunks:
        s, e = chunk.start, chunk.end
        qc = _rows(q5, s, e) * scale
        scores = [_scores(qc, k, chunk, part, row_mask, g) for part in chunk.parts]
        row_max = scores[0].amax(-1)
        for extra in scores[1:]:
            row_max = torch.maximum(row_max, extra.amax(-1))
        # A row that sees no key has max -inf; 0 instead keeps exp(-inf - 0) = 0 and the output 0.
        row_max = row_max.masked_fill_(row_max == float("-inf"), 0.0).unsqueeze(-1)
        total = None
        acc_out = None
        for part, sc in zip(chunk.parts, scores):
            probs = sc.sub_(row_max).exp_()
            part_sum = probs.sum(-1)
            total = part_sum if total is None else total.add_(part_sum)
            o = torch.matmul(probs.view(b, hk, g * (e - s), -1).to(v.dtype), v[:, :, part.start : part.end])
            acc_out = o.to(_acc(q.dtype)) if acc_out is None else acc_out.add_(o)
        total = total.clamp_min_(torch.finfo(total.dtype).tiny)
        out5[:, :, :, s:e] = (acc_out.view(b, hk, g, e - s, -1) / total.unsqueeze(-1)).to(q.dtype)
        lse[:, :, :, s:e] = row_max.squeeze(-1) + total.log()
    return out, lse


class _ChunkedAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, chunks, row_mask):
        out, lse = _forward(q, k, v, chunks, row_mask)
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.chunks, ctx.row_mask = chunks, row_mask
        return out

    @staticmethod
    def backward(ctx, grad_out):
        q, k, v, out, lse = ctx.saved_tensors
        b, h, length, d = q.shape
        hk = k.shape[1]
        g = h // hk
        scale = d**-0.5
        acc = _acc(q.dtype)
        q5, out5, grad5 = _grouped(q, hk), _grouped(out, hk), _grouped(grad_out, hk)
        # Contiguous gradients so a key range of dk / dv is a (b * hk, keys, d) view that batched
        # matmuls accumulate into in place, without a temporary per part.
        dq = torch.zeros(q.shape, dtype=q.dtype, device=q.device)
        dk = torch.zeros(k.shape, dtype=k.dtype, device=k.device)
        dv = torch.zeros(v.shape, dtype=v.dtype, device=v.device)
        dq5 = _grouped(dq, hk)
        for chunk in ctx.chunks:
            s, e = chunk.start, chunk.end
            n = g * (e - s)
            qc, do = _rows(q5, s, e) * scale, _rows(grad5, s, e)
            delta = (do.to(acc) * _rows(out5, s, e).to(acc)).sum(-1, keepdim=True)
            lse_c = lse[:, :, :, s:e].unsqueeze(-1)
            dqc = None
            for part in chunk.parts:
                ks, ke = part.start, part.end
                probs = _scores(qc, k, chunk, part, ctx.row_mask, g).sub_(lse_c).exp_().view(b, hk, n, -1)
                _flat(dv, ks, ke).baddbmm_(_flat(probs.to(v.dtype)).transpose(-1, -2), _flat(do))
                dscores = torch.matmul(do, v[:, :, ks:ke].transpose(-1, -2)).to(acc)
                dscores = dscores.sub_(delta).mul_(probs).to(q.dtype)
                del probs  # keep at most two score tiles alive: this part's dS and the next part's P
                # Scores were computed from q * scale: dS/dq carries the scale, dS/dk already has it.
                _flat(dk, ks, ke).baddbmm_(_flat(dscores).transpose(-1, -2), _flat(qc))
                part_dq = torch.matmul(dscores, k[:, :, ks:ke])
                dqc = part_dq if dqc is None else dqc.add_(part_dq)
            dq5[:, :, :, s:e] = dqc.mul_(scale).view(b, hk, g, e - s, d)
        return dq, dk, dv, None, None
