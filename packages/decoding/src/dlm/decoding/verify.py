"""Pieces every draft-then-verify decoder shares: reading a draft block's predictions, proposing
drafts, verifying them, and the per-row bookkeeping after a verify step."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from dlm.core.stats import DecodeStats
from dlm.decoding.base import Progress
from dlm.decoding.sampling import Sampler, accept_greedy, accept_sampled, draw
from dlm.decoding.stream import Stream


def block_predictions(block_logits: Tensor, shift: bool) -> Tensor:
    """The predictions of a draft block [t, MASK x K] for the tokens after t, in order.

    block_logits (..., K + 1, vocab). With token shift the logit at i predicts position i + 1, so
    all K + 1 logits are predictions: the K masks and, from the last position, the token after the
    block (the cross-block target the training loss includes). Without shift mask k is predicted by
    its own logit k, so there are K.
    """
    return block_logits if shift else block_logits[..., 1:, :]


@dataclass
class Drafts:
    """Draft tokens and, when sampled, the distributions q they were sampled from ((m, vocab))."""

    tokens: list[int]
    q: Tensor | None = None


def propose(sampler: Sampler, predictions: Tensor, mask_id: int | None, generator) -> list[Drafts]:
    """One Drafts per row of predictions (rows, m, vocab): argmax, or a sample from q."""
    if sampler.greedy:
        return [Drafts(t) for t in sampler.pick(predictions, mask_id, generator).tolist()]
    q = sampler.probs(predictions, mask_id)
    tokens = draw(q, generator).tolist()
    return [Drafts(t, qr) for t, qr in zip(tokens, q, strict=True)]


def verify(
    sampler: Sampler, logits: Tensor, drafts: Drafts, mask_id: int | None, generator: torch.Generator
) -> tuple[int, int]:
    """Accepted count n and the verifier's token after them, from the verify logits (m + 1, vocab)
    of [t, d_1..d_m] (AR logits: logits[i] is the target's distribution for draft slot i + 1)."""
    if sampler.greedy:
        return accept_greedy(sampler.pick(logits, mask_id, generator).tolist(), drafts.tokens)
    return accept_sampled(sampler.probs(logits, mask_id), drafts.q, drafts.tokens, generator)


def verify_step(
    sampler: Sampler,
    target: Stream,
    rows: Progress,
    drafts: list[Drafts],
    before: list[int],
    mask_id: int | None,
    generator: torch.Generator,
    stats: DecodeStats,
) -> list[int]:
    """One verify forward `[t, d_1..d_m]` (Verify mask, committed) for every active row, with
    drafts[i] the drafts of the i-th active row and `before` the cache lengths before the step:
    emit the accepted drafts and the verifier's token (the new pending token), crop the cache to
    t + the accepted drafts. Returns the accepted count of each active row."""
    active = rows.active
    layout = target.layout()
    for r, d in zip(active, drafts, strict=True):
        layout.add(r, [rows.pending[r]] + d.tokens, before[r], causal=True)
    logits = target.forward(layout, len(active), commit=True).cpu()
    keep, accepted = list(before), []
    for r, d in zip(active, drafts, strict=True):
        m = len(d.tokens)
        n, token = verify(sampler, logits[r, : m + 1], d, mask_id, generator)
        stats.record_verify(rows.emit(r, d.tokens[:n] + [token]), m, n)
        keep[r] += 1 + n
        rows.pending[r] = token
        accepted.append(n)
    target.settle(keep, rows)
    return accepted
