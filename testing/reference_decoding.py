"""Slow references: each decoder recomputed from scratch, one prompt, no KV cache.

Every step runs one full forward over the whole sequence (committed text + the block at hand) with
a dense mask written out here element by element: the committed text attends as the model's clean
stream does (causal, or block-causal for clean "block"), a draft block sees all of it and itself. The
cached decoders must reproduce these token for token (greedy, and sampled with the same seed at
batch size 1), with the same accepted lengths and forward counts. They share only the sampling
rules (dlm.decoding.sampling) and the Fast-dLLM fill rule (BlockDiffusionDecoder.fill / ready),
which are tested on their own.

Test support, not part of any package: the decoding tests import it as `reference_decoding` (the
root pytest config puts testing/ on the path).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from dlm.attention import Dense
from dlm.decoding.block_diffusion import BlockDiffusionDecoder
from dlm.decoding.fused import FusedSelfSpeculativeDecoder
from dlm.decoding.verify import propose, verify


def clean_table(n: int, prompt_cached: int, block: int | None = None) -> Tensor:
    """How the committed text attends in the clean stream: causal, or (block given) each of the first
    `prompt_cached` tokens alone and then blocks of `block` tokens, each seeing itself and all before."""
    ids = torch.arange(n)
    if block is not None:
        ids = torch.where(ids < prompt_cached, ids, prompt_cached + (ids - prompt_cached) // block)
    return ids[None, :] <= ids[:, None]  # [q, k]: the key's block is not after the query's


@torch.no_grad()
def full_logits(model: nn.Module, tokens: list[int], table: Tensor) -> Tensor:
    device = next(model.parameters()).device
    t = torch.tensor([tokens], device=device)
    positions = torch.arange(len(tokens), device=device)[None]
    return model(t, positions, Dense(table))[0].cpu()


def causal_logits(model: nn.Module, tokens: list[int]) -> Tensor:
    return full_logits(model, tokens, clean_table(len(tokens), 0))


def block_logits(
    model: nn.Module, committed: list[int], block: list[int], clean: Tensor | None = None
) -> Tensor:
    """Logits of `block` placed after `committed`: committed text attends as `clean` says (default
    causal), block tokens see all committed tokens and the whole block."""
    c, n = len(committed), len(committed) + len(block)
    table = torch.zeros(n, n, dtype=torch.bool)
    table[:c, :c] = clean_table(c, 0) if clean is None else clean
    table[c:, :] = True
    return full_logits(model, committed + block, table)[c:]


def predictions(logits: Tensor, shift: bool) -> Tensor:
    """With shift logits[i] predicts block position i + 1; without, mask i is predicted by logits[i]."""
    return logits if shift else logits[1:]


@dataclass
class Result:
    tokens: list[int] = field(default_factory=list)
    accepted: list[int] = field(default_factory=list)
    forwards: dict[str, int] = field(default_factory=dict)
    done: bool = False

    def emit(self, tokens: list[int], budget: int, eos_id: int | None) -> int:
        kept = 0
        for t in tokens:
            if self.done:
                break
            self.tokens.append(int(t))
            kept += 1
            self.done = t == eos_id or len(self.tokens) >= budget
        return kept

    def count(self, model: str = "target") -> None:
        self.forwards[model] = self.forwards.get(model, 0) + 1


def _start(budget: int) -> tuple[Result, torch.Generator]:
    return Result(done=budget == 0), torch.Generator()


def ar(decoder, model: nn.Module, prompt: list[int], budget: int) -> Result:
    res, g = _start(budget)
    g.manual_seed(decoder.seed)
    while not res.done:
        res.count()
        logits = causal_logits(model, prompt + res.tokens)[-1:]
        res.emit(
            [int(decoder.sampler.pick(logits, model.config.mask_token_id, g)[0])], budget, decoder.eos_id
        )
    return res


def speculative(
    decoder, model: nn.Module, prompt: list[int], budget: int, drafter: nn.Module | None = None
) -> Result:
    """SelfSpeculativeDecoder (drafter None) or DrafterSpeculativeDecoder (drafter = decoder.drafter)."""
    res, g = _start(budget)
    g.manual_seed(decoder.seed)
    draft_model = model if drafter is None else drafter
    mask_id, k = decoder.resolve(model)  # the settings, with k taken from training when unset
    m = k + int(decoder.cross_block)
    c = len(prompt) - 1
    while not res.done:
        text = prompt + res.tokens
        res.count("target" if drafter is None else "drafter")
        logits = block_logits(draft_model, text[:c], [text[c]] + [mask_id] * k)
        d = propose(
            decoder.sampler, predictions(logits, draft_model.config.token_shift)[None, :m], mask_id, g
        )[0]
        res.count()
        v = causal_logits(model, text[: c + 1] + d.tokens)[c:]
        n, token = verify(decoder.sampler, v, d, mask_id, g)
        res.accepted.append(res.emit(d.tokens[:n] + [token], budget, decoder.eos_id))
        c += 1 + n
    return res


def fused(decoder: FusedSelfSpeculativeDecoder, model: nn.Module, prompt: list[int], budget: int) -> Result:
    res, g = _start(budget)
    g.manual_seed(decoder.seed)
    (mask_id, k), shift = decoder.resolve(model), model.config.token_shift
    c, drafts = len(prompt) - 1, None
    while not res.done:
        text = prompt + res.tokens
        res.count()
        if drafts is None:
            logits = block_logits(model, text[:c], [text[c]] + [mask_id] * k)
            drafts = propose(decoder.sampler, predictions(logits, shift)[None], mask_id, g)[0]
            continue
        m = len(drafts.tokens)
        v = causal_logits(model, text[: c + 1] + drafts.tokens)[c:]
        n, token = verify(decoder.sampler, v, drafts, mask_id, g)
        res.accepted.append(res.emit(drafts.tokens[:n] + [token], budget, decoder.eos_id))
        x = [text[c]] + drafts.tokens
        drafts = None
        if (decoder.quadratic or n == m) and not res.done:
            # The candidate block that assumed n acceptances: d_1..d_(n-1) committed, x_n pending.
            logits = block_logits(model, text[:c] + x[:n], [x[n]] + [mask_id] * k)
            drafts = propose(decoder.sampler, predictions(logits, shift)[None, 1:], mask_id, g)[0]
        c += 1 + n
    return res


def block_diffusion(
    decoder: BlockDiffusionDecoder, model: nn.Module, prompt: list[int], budget: int
) -> Result:
    res, g = _start(budget)
    g.manual_seed(decoder.seed)
    mask_id, B, clean_kind, fold = decoder.resolve(model)  # unset settings taken from training
    shift = model.config.token_shift
    structure = B if clean_kind == "block" else None
    committed, anchor = prompt[:-1], prompt[-1]
    slots = B if fold else B - 1  # with fold the next anchor is the block's last masked position
    while not res.done:
        block = [anchor] + [mask_id] * slots
        clean = clean_table(len(committed), len(prompt) - 1, structure)
        while True:
            res.count()
            preds = predictions(block_logits(model, committed, block[:B], clean), shift)
            room = budget - len(res.tokens)
            decoder.fill(block, preds, room, mask_id, g)
            if decoder.ready(block, room, mask_id):
                break
        res.emit(block[1:], budget, decoder.eos_id)
        if res.done:
            break
        if fold:
            anchor = block[B]
        else:
            res.count()
            table = clean_table(len(committed) + B, len(prompt) - 1, structure)
            anchor = int(decoder.sampler.pick(full_logits(model, committed + block, table)[-1], mask_id, g))
            res.emit([anchor], budget, decoder.eos_id)
        committed = committed + block[:B]
    return res


@torch.no_grad()
def clean_kv(model: nn.Module, tokens: list[int], table: Tensor) -> tuple[Tensor, Tensor]:
    """K and V (layers, kv_heads, n, head_dim) of a fresh forward over tokens with a dense mask."""
    device = next(model.parameters()).device
    cache = model.new_cache(1, len(tokens))
    positions = torch.arange(len(tokens), device=device)[None]
    model(torch.tensor([tokens], device=device), positions, Dense(table), cache=cache)
    return torch.stack(cache.k)[:, 0].cpu(), torch.stack(cache.v)[:, 0].cpu()


__all__ = [
    "Result",
    "ar",
    "block_diffusion",
    "block_logits",
    "causal_logits",
    "clean_kv",
    "clean_table",
    "fused",
    "speculative",
]
