"""dlm-decode: run decoders on a checkpoint and print TPF, tau, tok/s and agreement with AR.

dlm-decode --checkpoint ckpt/ --corpus shakespeare --num-prompts 8 --decoder ar self-spec fused
dlm-decode --checkpoint ckpt/ --prompts prompts.jsonl --decoder block --block-size 8 --json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dlm.core import load_model
from dlm.core.corpora import EMBEDDED, embedded_documents
from dlm.core.protocols import DecodeStats, agreement
from dlm.decoding.ar import ARDecoder
from dlm.decoding.block_diffusion import BlockCommit, BlockDiffusionDecoder, CausalCommit
from dlm.decoding.fused import FusedSelfSpeculativeDecoder
from dlm.decoding.self_speculative import SelfSpeculativeDecoder
from dlm.decoding.speculative import SpeculativeDecoder

DTYPES = {
    "float32": torch.float32,
    "float64": torch.float64,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}


def _sampling(a: argparse.Namespace, eos_id: int | None) -> dict[str, Any]:
    return dict(temperature=a.temperature, top_k=a.top_k, top_p=a.top_p, seed=a.seed, eos_id=eos_id)


def _block(a: argparse.Namespace, eos: int | None, drafter) -> BlockDiffusionDecoder:
    return BlockDiffusionDecoder(
        block_size=a.block_size,
        threshold=a.threshold,
        sub_block=a.sub_block,
        clean=BlockCommit() if a.clean == "block" else CausalCommit(),
        fold=False if a.no_fold else None,
        **_sampling(a, eos),
    )


DECODERS: dict[str, Callable[..., Any]] = {
    "ar": lambda a, eos, drafter: ARDecoder(**_sampling(a, eos)),
    "block": _block,
    "self-spec": lambda a, eos, drafter: SelfSpeculativeDecoder(a.k, a.cross_block, **_sampling(a, eos)),
    "fused": lambda a, eos, drafter: FusedSelfSpeculativeDecoder(a.k, quadratic=False, **_sampling(a, eos)),
    "quadratic": lambda a, eos, drafter: FusedSelfSpeculativeDecoder(
        a.k, quadratic=True, **_sampling(a, eos)
    ),
    "drafter": lambda a, eos, drafter: SpeculativeDecoder(
        _need(drafter), a.k, a.cross_block, **_sampling(a, eos)
    ),
}
"""CLI names of the decoders; each builds one from the parsed arguments."""


def _need(drafter):
    if drafter is None:
        raise ValueError("--decoder drafter needs --drafter PATH (a diffusion drafter checkpoint)")
    return drafter


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="dlm-decode", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--checkpoint", required=True, help="a dlm checkpoint dir, an HF dir or a dlm Lightning .ckpt"
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--prompts", help="a text file (one prompt per line) or JSONL with a 'text' field")
    source.add_argument("--corpus", choices=sorted(EMBEDDED), help="take prompts from an embedded corpus")
    p.add_argument("--split", default="test", help="corpus split (train, validation, test)")
    p.add_argument("--num-prompts", type=int, default=8, help="corpus documents to take prompts from")
    p.add_argument("--prompt-tokens", type=int, default=64, help="tokens per corpus prompt")
    p.add_argument(
        "--decoder", nargs="+", default=["ar", "self-spec"], choices=list(DECODERS), help="decoders to run"
    )
    p.add_argument("--drafter", help="drafter checkpoint for --decoder drafter")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=8, help="prompts decoded together")
    p.add_argument("--k", type=int, default=4, help="masks per draft block (speculative decoders)")
    p.add_argument(
        "--cross-block", action="store_true", help="use the cross-block prediction as one more draft"
    )
    p.add_argument("--block-size", type=int, default=8, help="block diffusion: block length incl. the anchor")
    p.add_argument("--threshold", type=float, default=0.9, help="block diffusion: confidence threshold")
    p.add_argument("--sub-block", type=int, default=None, help="block diffusion: sub-block size")
    p.add_argument(
        "--clean",
        choices=["causal", "block"],
        default="causal",
        help="block diffusion: clean-stream attention (tri-mode: causal; conversion: block)",
    )
    p.add_argument(
        "--no-fold", action="store_true", help="block diffusion: commit blocks in their own forward"
    )
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("--top-k", type=int, default=None)
    p.add_argument("--top-p", type=float, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dtype", choices=list(DTYPES), default="float32")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--plot", help="save a PNG of acceptance by position and accepted lengths")
    return p


def read_prompts(path: str, tokenizer) -> list[list[int]]:
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"prompts file not found: {file}")
    lines = [line for line in file.read_text(encoding="utf-8").splitlines() if line.strip()]
    if file.suffix == ".jsonl":
        texts = []
        for n, line in enumerate(lines, 1):
            try:
                texts.append(json.loads(line)["text"])
            except (json.JSONDecodeError, KeyError, TypeError):
                raise ValueError(f"{file}:{n}: expected a JSON object with a 'text' field") from None
    else:
        texts = lines
    if not texts:
        raise ValueError(f"{file} holds no prompts")
    return [tokenizer.encode(t) for t in texts]


def corpus_prompts(corpus: str, split: str, count: int, length: int, tokenizer) -> list[list[int]]:
    if count <= 0 or length <= 0:
        raise ValueError(f"--num-prompts and --prompt-tokens must be positive, got {count} and {length}")
    docs = embedded_documents(corpus, split)
    prompts = [tokenizer.encode(d.text)[:length] for d in docs[:count]]
    if not prompts:
        raise ValueError(f"the {corpus} corpus has no {split} documents")
    return prompts


@dataclass
class Run:
    name: str
    tokens: list[list[int]]
    stats: DecodeStats

    def row(self, ar: Run | None) -> dict[str, Any]:
        out = {"decoder": self.name, **self.stats.summary()}
        out["drafter_forwards_per_token"] = self.stats.drafter_forwards_per_token
        if ar is not None:
            out["speedup_vs_ar"] = (
                self.stats.tokens_per_second / ar.stats.tokens_per_second
                if ar.stats.tokens_per_second
                else 0.0
            )
            out["agreement_with_ar"] = agreement(self.tokens, ar.tokens)
        return out


def decode_all(
    name: str, decoder, model, prompts: list[list[int]], max_new_tokens: int, batch_size: int
) -> Run:
    """Decode prompts in batches of batch_size; one Run with the merged stats."""
    if batch_size <= 0:
        raise ValueError(f"--batch-size must be positive, got {batch_size}")
    tokens, stats = [], DecodeStats()
    for start in range(0, len(prompts), batch_size):
        out, s = decoder.generate(model, prompts[start : start + batch_size], max_new_tokens)
        tokens += out
        stats = stats.merged(s)
    return Run(name, tokens, stats)


def table(rows: Sequence[dict[str, Any]]) -> str:
    head = ["decoder", "TPF", "drafter fwd/tok", "tau", "tok/s", "vs AR", "agree AR"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [
            r["decoder"],
            f"{r['tpf']:.2f}",
            f"{r['drafter_forwards_per_token']:.2f}" if r["forwards"].get("drafter") else "-",
            f"{r['tau']:.2f}" if r["tau"] else "-",
            f"{r['tokens_per_second']:.0f}",
            f"{r['speedup_vs_ar']:.2f}x" if "speedup_vs_ar" in r else "-",
            f"{r['agreement_with_ar']:.3f}" if "agreement_with_ar" in r else "-",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def load(args: argparse.Namespace) -> tuple[Any, Any, Any, list[list[int]]]:
    """(model, tokenizer, drafter or None, prompts) as the arguments say."""
    if args.threads:
        torch.set_num_threads(args.threads)
    model, tokenizer = load_model(args.checkpoint)
    model = model.to(device=args.device, dtype=DTYPES[args.dtype]).eval()
    drafter = None
    if args.drafter:
        drafter = load_model(args.drafter)[0].to(device=args.device, dtype=DTYPES[args.dtype]).eval()
    if args.prompts:
        prompts = read_prompts(args.prompts, tokenizer)
    else:
        prompts = corpus_prompts(args.corpus, args.split, args.num_prompts, args.prompt_tokens, tokenizer)
    return model, tokenizer, drafter, prompts


def build(args: argparse.Namespace, names: Sequence[str], eos_id: int | None, drafter) -> dict[str, Any]:
    """The named decoders, AR first (the reference for agreement and speed)."""
    names = ["ar"] + [n for n in dict.fromkeys(names) if n != "ar"]
    return {n: DECODERS[n](args, eos_id, drafter) for n in names}


def run(args: argparse.Namespace) -> tuple[list[Run], list[dict[str, Any]]]:
    model, tokenizer, drafter, prompts = load(args)
    decoders = build(args, args.decoder, tokenizer.eos_id, drafter)
    runs = [
        decode_all(n, d, model, prompts, args.max_new_tokens, args.batch_size) for n, d in decoders.items()
    ]
    return runs, [r.row(runs[0]) for r in runs]


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        runs, rows = run(args)
        if args.plot:
            from dlm.decoding.plot import plot_acceptance

            plot_acceptance([(r.name, r.stats) for r in runs], args.plot)
    except (ValueError, FileNotFoundError) as err:
        print(f"dlm-decode: error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(rows, indent=2) if args.json else table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
