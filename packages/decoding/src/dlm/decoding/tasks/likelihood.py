"""The likelihood of HumanEval's reference solutions: a retention figure that does not depend on
greedy luck. Pass@1 moves by whole problems; these move with every token.

- AR: the mean NLL per token of each canonical solution given its raw prompt (causal forward).
- Diffusion: the masked CE of the same tokens at mask ratio 0.5 (FixedRatio, seed 0, the problem's
  index as sample index), with blocks anchored at the prompt's last token as the decoders anchor
  them: the sequence is left-padded so that token sits at a block start, padding is its own document,
  and one [x_t ; x_0] forward scores the masked solution tokens under the mask the model trained with
  (TriMode for a token-causal clean stream, BlockDiffusion for a block-causal one).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from dlm.attention import BlockDiffusion, Causal, SameDocument, TriMode
from dlm.core.checkpoint import training_of
from dlm.core.losses import MaskedDiffusionLoss, target_cross_entropy
from dlm.core.masking import FixedRatio


def device_of(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def solution_nll(model: nn.Module, tokenizer: Any, problems: dict, tasks: Sequence[str]) -> float:
    """Mean NLL per token of the canonical solutions given their prompts (AR, token-weighted)."""
    total, count = 0.0, 0
    for task in tasks:
        prompt, solution = split_ids(tokenizer, problems[task])
        tokens = torch.tensor([prompt + solution], device=device_of(model))
        positions = torch.arange(tokens.shape[1], device=tokens.device).unsqueeze(0)
        logits = model(tokens, positions, Causal())[0, len(prompt) - 1 : -1].float()
        nll = torch.nn.functional.cross_entropy(logits, tokens[0, len(prompt) :], reduction="sum")
        total, count = total + float(nll), count + len(solution)
    return total / count


@torch.no_grad()
def solution_masked_ce(
    model: nn.Module, tokenizer: Any, problems: dict, tasks: Sequence[str], ratio: float = 0.5, seed: int = 0
) -> float | None:
    """Mean masked CE of the solutions' tokens in diffusion mode, None for a model without a
    diffusion training record (an AR model has no diffusion mode to score)."""
    record = training_of(model)
    mask_id = model.config.mask_token_id
    if record is None or record.block_size is None or record.clean is None or mask_id is None:
        return None
    block, shift = record.block_size, model.config.token_shift
    corruption, loss = FixedRatio(ratio), MaskedDiffusionLoss(weighted=False)
    total, count = 0.0, 0
    for index, task in enumerate(tasks):
        prompt, solution = split_ids(tokenizer, problems[task])
        tokens, scored, docs, positions = anchored(
            prompt, solution, block, tokenizer.pad_id, device_of(model)
        )
        index_t = torch.tensor([index], device=tokens.device)
        corrupted = corruption(tokens, index_t, 0, block, mask_id, seed, loss_mask=scored)
        length = tokens.shape[1]
        pattern = TriMode(block, length) if record.clean == "causal" else BlockDiffusion(block, length)
        mask = pattern & SameDocument.for_noisy_clean(docs)
        both = torch.cat([corrupted.tokens, tokens], dim=1)
        logits = model(both, positions.repeat(1, 2), mask)[:, :length]
        targets = loss.targets(corrupted.mask, corrupted.weights, block, shift, cross_block=False)
        ce = target_cross_entropy(logits, tokens, targets)
        total, count = total + float(ce.sum()), count + ce.numel()
    return total / count if count else None


def split_ids(tokenizer: Any, problem: dict) -> tuple[list[int], list[int]]:
    """(prompt ids, solution ids), the solution encoded after the prompt so the two join as the
    whole text would (a solution's first token never merges with the prompt's last)."""
    prompt = tokenizer.encode(problem["prompt"])
    whole = tokenizer.encode(problem["prompt"] + problem["canonical_solution"])
    if whole[: len(prompt)] != prompt:  # the tokenizer merged across the boundary
        return prompt, tokenizer.encode(problem["canonical_solution"])
    return prompt, whole[len(prompt) :]


def anchored(
    prompt: list[int], solution: list[int], block: int, pad: int, device: torch.device
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(tokens, scored, doc ids, positions), each (1, L): left padding puts the prompt's last token
    at a block start, right padding fills the last block; positions count from the prompt's start."""
    left = -(len(prompt) - 1) % block
    text = len(prompt) + len(solution)
    right = -(left + text) % block
    tokens = [pad] * left + prompt + solution + [pad] * right
    scored = [False] * (left + len(prompt)) + [True] * len(solution) + [False] * right
    docs = [1] * left + [0] * text + [2] * right
    positions = [0] * left + list(range(text)) + [text] * right

    def tensor(values: list, dtype=None) -> Tensor:
        return torch.tensor([values], device=device, dtype=dtype)

    return tensor(tokens), tensor(scored), tensor(docs), tensor(positions)
