"""Decoding benchmark: AR vs block diffusion vs self-speculation (plain, fused, quadratic), side by side.

    python bench/decoding.py --checkpoint CKPT --corpus shakespeare --num-prompts 16 --k 4 --block-size 8
    python bench/decoding.py --make-pattern-checkpoint /tmp/pattern [--pattern-steps 600]
    python bench/decoding.py --checkpoint /tmp/pattern --prompts /tmp/pattern/prompts.txt

One checkpoint, one prompt set, every decoder in one process: TPF (tokens per target forward), tau
(tokens per verify step), tok/s, tok/s ratio to AR and agreement with AR (greedy). Each decoder runs
--repeats times, interleaved, after a warm-up; the fastest run counts (the CPU is shared, timings
are noisy: read ratios, never absolute numbers). Nothing is asserted.

--make-pattern-checkpoint trains a tiny byte-level tri-mode model on a repeated text with the
objective in testing/pattern_model.py and saves it (plus prompts.txt, windows of that text) with
dlm.core.save_checkpoint: a stand-in until a real tri-mode checkpoint exists.
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


def bench(args: argparse.Namespace) -> str:
    model, tokenizer, drafter, prompts = cli.load(args)
    decoders = cli.build(args, args.decoder, tokenizer.eos_id, drafter)
    for name, decoder in decoders.items():  # warm-up
        cli.decode_all(name, decoder, model, prompts[:1], 4, 1)
    best: dict[str, cli.Run] = {}
    for _ in range(args.repeats):
        for name, decoder in decoders.items():
            run = cli.decode_all(name, decoder, model, prompts, args.max_new_tokens, args.batch_size)
            if name not in best or run.stats.seconds < best[name].stats.seconds:
                best[name] = run
    rows = [run.row(best["ar"]) for run in best.values()]
    return cli.table(rows)


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
    p = cli.parser()
    p.prog = "bench/decoding.py"
    p.set_defaults(decoder=DECODERS, threads=1)
    p.add_argument("--repeats", type=int, default=3, help="timed runs per decoder (the fastest counts)")
    args = p.parse_args(argv)
    try:
        print(bench(args))
    except (ValueError, FileNotFoundError) as err:
        print(f"bench/decoding.py: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
