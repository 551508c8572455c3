"""dlm-decode: run decoders on a checkpoint and print TPF, tau, tok/s and agreement with AR.

dlm-decode --checkpoint ckpt/ --corpus shakespeare --num-prompts 8 --decoder ar self-spec fused
dlm-decode --checkpoint ckpt/ --prompts prompts.jsonl --decoder block --block-size 8 --json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dlm.core.corpora import EMBEDDED, embedded_documents
from dlm.decoding.batching import Run, add_decoder_options, build, decode_all, load_models


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="dlm-decode", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_decoder_options(p, default=["ar", "self-spec"], max_new_tokens=64)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--prompts", help="a text file (one prompt per line) or JSONL with a 'text' field")
    source.add_argument("--corpus", choices=sorted(EMBEDDED), help="take prompts from an embedded corpus")
    p.add_argument("--split", default="test", help="corpus split (train, validation, test)")
    p.add_argument("--num-prompts", type=int, default=8, help="corpus documents to take prompts from")
    p.add_argument("--prompt-tokens", type=int, default=64, help="tokens per corpus prompt")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--plot", help="save a PNG of acceptance by position and accepted lengths")
    return p


def read_prompts(path: str, tokenizer) -> list[list[int]]:
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"prompts file not found: {file}")
    try:
        lines = [line for line in file.read_text(encoding="utf-8").splitlines() if line.strip()]
    except UnicodeDecodeError as err:
        raise ValueError(f"{file}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    if file.suffix == ".jsonl":
        texts = []
        for n, line in enumerate(lines, 1):
            try:
                text = json.loads(line)["text"]
            except (json.JSONDecodeError, KeyError, TypeError):
                raise ValueError(f"{file}:{n}: expected a JSON object with a 'text' field") from None
            if not isinstance(text, str) or not text:
                raise ValueError(f"{file}:{n}: 'text' must be a non-empty string, got {text!r}")
            texts.append(text)
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
    model, tokenizer, drafter = load_models(args)
    if args.prompts:
        prompts = read_prompts(args.prompts, tokenizer)
    else:
        prompts = corpus_prompts(args.corpus, args.split, args.num_prompts, args.prompt_tokens, tokenizer)
    return model, tokenizer, drafter, prompts


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
