"""A tiny tri-mode model trained on a deterministic pattern, for end-to-end decoder tests and benches.

The objective is TriModeModule's (dlm.training), built from the same dlm.core pieces without
Lightning or data modules: a corruption strategy (its anchor rule leaves each block's first token
clean), one forward over [x_t ; x_0] with the TriMode mask, and HybridLoss (masked diffusion on the
noisy half, next-token CE on the clean half); see the corruption, loss and tri-mode sections of
docs/DESIGN.md. A model trained this way drafts the pattern perfectly, so self-speculation accepts
every draft.

Test support, not part of any package: the decoding tests import it as `pattern_model` (the root
pytest config puts testing/ on the path), bench/decoding.py puts testing/ on sys.path itself.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from dlm.attention import TriMode
from dlm.core import ModelConfig, Transformer
from dlm.core.checkpoint import TrainingRecord, set_training
from dlm.core.losses import HybridLoss
from dlm.core.masking import Corruption, Uniform

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
    model: Transformer,
    x0: Tensor,
    index: Tensor,
    block_size: int,
    corruption: Corruption,
    loss: HybridLoss,
    seed: int,
) -> Tensor:
    """`loss` of one [x_t ; x_0] forward, x_t drawn by `corruption` for samples `index` (batch,)."""
    b, L = x0.shape
    corrupted = corruption(x0, index, 0, block_size, model.config.mask_token_id, seed)
    positions = torch.arange(L).repeat(2).expand(b, -1)
    logits = model(torch.cat([corrupted.tokens, x0], 1), positions, TriMode(block_size, L))
    return loss(logits, x0, corrupted.mask, corrupted.weights, block_size, model.config.token_shift)


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
    """A small Transformer trained with the tri-mode objective on `pattern`; returned in eval mode,
    carrying the TrainingRecord a tri-mode run writes (so decoders take block_size and k from it)."""
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
    # Noise levels t ~ U(0.1, 1) per block, the range this model was always trained at: the
    # trained-model tests' thresholds were set with it.
    corruption, loss = Uniform(eps=0.1), HybridLoss()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    for step in range(steps):
        index = torch.arange(step * batch, (step + 1) * batch)  # every sample new: one epoch
        value = tri_mode_loss(model, pattern(g, batch, seq_len), index, block_size, corruption, loss, seed)
        opt.zero_grad()
        value.backward()
        opt.step()
        schedule.step()
    record = TrainingRecord("train_tri_mode", block_size=block_size, token_shift=token_shift, clean="causal")
    set_training(model, record)
    return model.eval()
