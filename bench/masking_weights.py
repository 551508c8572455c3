"""Loss-weight statistics of the corruption strategies: where the weighted CE sits and how it varies.

    python bench/masking_weights.py                       # B = 8 and 16, batches of 8 x 256 tokens
    python bench/masking_weights.py --block-size 8 --batches 100

For each strategy, over --batches batches drawn as training draws them (sample indices 0.., epoch 0):

- share k<=1: the share of the total weight (the weighted CE if every token's CE were equal) that
  sits on blocks with at most one masked position, beside the share of such blocks;
- max weight: the largest weight of any masked token;
- scale std/mean: the batch loss scale (sum of weights / tokens, the weighted CE per token of a
  model whose CE is 1 everywhere) across batches, its standard deviation over its mean.

Nothing is trained; it only draws masks.
"""

from __future__ import annotations

import argparse

import torch

from dlm.core.masking import Corruption, PositionDependent, Uniform


def statistics(
    strategy: Corruption, block_size: int, batches: int, batch: int, length: int
) -> dict[str, float]:
    tokens = torch.zeros(batch, length, dtype=torch.long)
    scale, low, low_blocks, blocks, max_weight, total = [], 0.0, 0, 0, 0.0, 0.0
    for b in range(batches):
        out = strategy(tokens, torch.arange(b * batch, (b + 1) * batch), 0, block_size, 1, 0)
        w = out.weights.view(batch, -1, block_size).double()
        k = out.mask.view(batch, -1, block_size).sum(-1)
        per_block = w.sum(-1)
        scale.append(per_block.sum().item() / tokens.numel())
        low += per_block[k <= 1].sum().item()
        total += per_block.sum().item()
        low_blocks += int((k <= 1).sum())
        blocks += k.numel()
        max_weight = max(max_weight, w.max().item())
    scale_t = torch.tensor(scale, dtype=torch.float64)
    return {
        "blocks k<=1": low_blocks / blocks,
        "share k<=1": low / total,
        "max weight": max_weight,
        "scale mean": scale_t.mean().item(),
        "scale std/mean": (scale_t.std() / scale_t.mean()).item(),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--block-size", type=int, nargs="*", default=[8, 16])
    p.add_argument("--batches", type=int, default=100)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--length", type=int, default=256)
    a = p.parse_args()
    strategies = {"Uniform": Uniform(), "PositionDependent": PositionDependent()}
    print(f"{a.batches} batches of {a.batch} x {a.length} tokens, eps = 1e-3, half_life = 0.25\n")
    print(
        "| B | strategy | blocks with k<=1 | their share of the weight | max weight | scale mean | scale std/mean |"
    )
    print("|---|---|---:|---:|---:|---:|---:|")
    for block in a.block_size:
        for name, strategy in strategies.items():
            s = statistics(strategy, block, a.batches, a.batch, a.length)
            print(
                f"| {block} | {name} | {s['blocks k<=1']:.1%} | {s['share k<=1']:.1%} | {s['max weight']:.0f} "
                f"| {s['scale mean']:.3f} | {s['scale std/mean']:.3f} |"
            )


if __name__ == "__main__":
    main()
