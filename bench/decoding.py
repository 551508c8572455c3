"""Decoding benchmark: AR vs block diffusion vs self-speculation (plain, fused, quadratic), side by side.

    python bench/decoding.py --checkpoint CKPT --corpus shakespeare --num-prompts 16 --k 4 --block-size 8
    python bench/decoding.py --make-pattern-checkpoint /tmp/pattern [--pattern-steps 600]
    python bench/decoding.py --checkpoint /tmp/pattern --prompts /tmp/pattern/prompts.txt

Decoding is `dlm-decode` itself (the one Evaluation: decoders interleaved batch by batch, one table,
`--output DIR` writes results.json), with every decoder and one torch thread by default: TPF, tau,
tok/s, its ratio to AR and agreement with AR. Read ratios, never absolute numbers. Nothing is asserted.

--make-pattern-checkpoint trains a tiny byte-level tri-mode model on a repeated text with the
objective in testing/pattern_model.py and saves it (plus prompts.txt, windows of that text) with
dlm.core.save_checkpoint: a model whose drafts are almost always right.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from dlm.core import ByteTokenizer, save_checkpoint
from dlm.core.checkpoint import training_of
from dlm.decoding import cli

# The pattern model's training loop is test support, in the repository's testing/, not in a package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "testing"))
from pattern_model import cyclic_text, train_tri_mode  # noqa: E402

DECODERS = ["ar", "block", "self-spec", "fused", "quadratic"]
PATTERN = (
    "the cat sat on the mat and the dog sat on the log; the cat saw the dog, the dog saw the cat, "
    "and then the cat ran to the log while the dog ran to the mat. "
)


def make_pattern_checkpoint(directory: Path, steps: int, block_size: int, seed: int) -> None:
    torch.set_num_threads(1)
    tok = ByteTokenizer()
    ids = tok.encode(PATTERN)
    model = train_tri_mode(
        cyclic_text(ids),
        tok.vocab_size,
        tok.mask_id,
        block_size=block_size,
        seq_len=128,
        steps=steps,
        batch=16,
        dim=64,
        n_layers=2,
        n_heads=4,
        seed=seed,
    )
    save_checkpoint(model, tok, directory, training=training_of(model))
    starts = range(0, len(PATTERN), len(PATTERN) // 16)
    prompts = [(PATTERN * 2)[s : s + 16] for s in starts][:16]
    (directory / "prompts.txt").write_text("\n".join(prompts) + "\n")
    print(
        f"saved {directory} (pattern-trained tri-mode model, {steps} steps) and {directory / 'prompts.txt'}"
    )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--make-pattern-checkpoint" in argv:
        p = argparse.ArgumentParser(prog="bench/decoding.py")
        p.add_argument("--make-pattern-checkpoint", type=Path, required=True)
        p.add_argument("--pattern-steps", type=int, default=600)
        p.add_argument("--block-size", type=int, default=8)
        p.add_argument("--seed", type=int, default=0)
        a = p.parse_args(argv)
        make_pattern_checkpoint(a.make_pattern_checkpoint, a.pattern_steps, a.block_size, a.seed)
        return 0
    defaults = [] if any(a.startswith("--decoder") for a in argv) else ["--decoder", *DECODERS]
    defaults += [] if any(a.startswith("--threads") for a in argv) else ["--threads", "1"]
    return cli.main([*defaults, *argv])


if __name__ == "__main__":
    sys.exit(main())
