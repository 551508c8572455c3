"""A tiny tri-mode model trained on a deterministic pattern, for end-to-end decoder tests and benches.

Pure torch (dlm.decoding never imports dlm.training): the TriMode mask over [x_t ; x_0], the anchor
rule (each noisy block's first token is never corrupted), a diffusion cross-entropy on the noisy
half and an AR cross-entropy on the clean half, as docs/DESIGN.md §4-6 describe, in a few dozen lines. A
model trained this way drafts the pattern perfectly, so self-speculation accepts every draft.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from dlm.attention import TriMode
from dlm.core import ModelConfig, Transformer

Pattern = Callable[[torch.Generator, int, int], Tensor]
"""(generator, batch, length) -> a LongTensor (batch, length) of pattern sequences."""


def counting(modulus: int, strides: tuple[int, ...] = (1,)) -> Pattern:
    """x_i = (start + stride * i) mod modulus, start and stride random per sequence."""

    def sample(g: torch.Generator, batch: int, length: int) -> Tensor:
        start = torch.randint(0, modulus, (batch, 1), generator=g)
        stride = torch.tensor(strides)[torch.randint(0, len(strides), (batch, 1), generator=g)]
        return (start + stride * torch.arange(length)) % modulus

    return sample


def cyclic_text(ids: list[int]) -> Pattern:
    """Windows of `ids` repeated forever, each starting at a random offset."""
    cycle = torch.tensor(ids)

    def sample(g: torch.Generator, batch: int, length: int) -> Tensor:
        start = torch.randint(0, len(ids), (batch, 1), generator=g)
        return cycle[(start + torch.arange(length)) % len(ids)]

    return sample


def tri_mode_loss(
    model: Transformer, x0: Tensor, block_size: int, g: torch.Generator, eps: float = 0.1
) -> Tensor:
    """Diffusion CE on the corrupted positions of [x_t ; x_0] (plus, with token shift, each noisy
    block's cross-block target: its last logit predicts the next block's anchor) + AR CE on x_0."""
    b, L = x0.shape
    mask_id, shift = model.config.mask_token_id, model.config.token_shift
    rate = (torch.rand(b, L // block_size, generator=g) * (1 - eps) + eps).repeat_interleave(block_size, 1)
    corrupt = torch.rand(b, L, generator=g) < rate
    corrupt[:, ::block_size] = False  # the anchor rule
    xt = x0.masked_fill(corrupt, mask_id)
    positions = torch.arange(L).repeat(2).expand(b, -1)
    logits = model(torch.cat([xt, x0], 1), positions, TriMode(block_size, L))
    noisy, clean = logits[:, :L], logits[:, L:]
    if shift:
        anchors = (torch.arange(1, L) % block_size == 0).expand(b, -1)
        chosen = corrupt[:, 1:] | anchors
        diffusion = F.cross_entropy(noisy[:, :-1][chosen], x0[:, 1:][chosen])
    else:
        diffusion = F.cross_entropy(noisy[corrupt], x0[corrupt])
    autoregressive = F.cross_entropy(clean[:, :-1].reshape(-1, clean.shape[-1]), x0[:, 1:].reshape(-1))
    return diffusion + autoregressive


def train_tri_mode(
    pattern: Pattern,
    vocab_size: int,
    mask_token_id: int,
    block_size: int = 4,
    seq_len: int = 32,
    steps: int = 300,
    batch: int = 32,
    dim: int = 48,
    n_layers: int = 2,
    n_heads: int = 4,
    token_shift: bool = True,
    lr: float = 3e-3,
    seed: int = 0,
) -> Transformer:
    """A small Transformer trained with the tri-mode objective on `pattern`; returned in eval mode."""
    if seq_len % block_size:
        raise ValueError(f"seq_len={seq_len} must be a multiple of block_size={block_size}")
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    config = ModelConfig(
        vocab_size=vocab_size,
        dim=dim,
        n_layers=n_layers,
        n_heads=n_heads,
        max_seq_len=512,
        mask_token_id=mask_token_id,
        token_shift=token_shift,
    )
    model = Transformer(config)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    for _ in range(steps):
        loss = tri_mode_loss(model, pattern(g, batch, seq_len), block_size, g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        schedule.step()
    return model.eval()
