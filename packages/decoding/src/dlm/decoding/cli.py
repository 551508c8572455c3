"""dlm-decode: run decoders on a checkpoint through the one Evaluation and print TPF, tau, tok/s and
agreement with AR (the table a module's test prints), or its JSON report.

    dlm-decode --checkpoint ckpt/ --corpus shakespeare --num-prompts 8 --decoder ar self-spec fused
    dlm-decode --checkpoint ckpt/ --prompts prompts.jsonl --decoder block --block-size 8 --json
    dlm-decode --checkpoint ckpt/ --corpus shakespeare --output runs/decode --config decoders.yaml

where decoders.yaml configures decoders as a YAML `evaluation:` block does:

    decoders:
      ar: {class_path: dlm.decoding.ARDecoder}
      spec: {class_path: dlm.decoding.SelfSpeculativeDecoder, init_args: {k: 3}}

With --output DIR: DIR/results.json (the report, the resolved config, dtype, commit, machine),
DIR/decoding.md and DIR/decoding.json.
"""

from __future__ import annotations

import json as jsonlib
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jsonargparse import ArgumentParser, Namespace

from dlm.core.checks import positive
from dlm.core.corpora import EMBEDDED, embedded_documents
from dlm.core.protocols import Decoder
from dlm.decoding.arguments import fail, parameters, parse, parser, resolved
from dlm.decoding.evaluation import Evaluation
from dlm.decoding.options import Loaded, label, load, prepare, resolve_decoders, short_decoders, write_run

PROG = "dlm-decode"
DEFAULT = ("ar", "self-spec")


def decode(
    loaded: Loaded,
    decoders: dict[str, Decoder] | None = None,
    prompts: str | None = None,
    corpus: str | None = None,
    split: str = "test",
    num_prompts: int = 8,
    prompt_tokens: int = 64,
    max_new_tokens: int = 64,
    batch_size: int = 8,
    baseline: str | None = "ar",
    json: bool = False,
    plot: str | None = None,
    output: str | None = None,
) -> dict[str, Any]:
    """Decode the prompts with every decoder, interleaved batch by batch; returns the report.

    Args:
        decoders: Decoders by name as class_path/init_args (as in a YAML evaluation block);
            instead of --decoder. Their eos_id, when unset, is the tokenizer's.
        prompts: A text file (one prompt per line) or JSONL with a 'text' field.
        corpus: Take prompts from an embedded corpus instead.
        split: Corpus split (train, validation, test).
        num_prompts: Corpus documents to take prompts from.
        prompt_tokens: Tokens per corpus prompt.
        max_new_tokens: Tokens each decoder generates per prompt.
        batch_size: Prompts decoded together.
        baseline: The decoder the others are compared with (tok/s ratio, agreement); none when no
            decoder has this name.
        json: Print the JSON report instead of the table.
        plot: Save a PNG of acceptance by position and accepted lengths here.
        output: A directory for results.json and the report (decoding.md, decoding.json).
    """
    if not decoders:
        raise ValueError("no decoder to run: give --decoder NAME ... or --decoders")
    if (prompts is None) == (corpus is None):
        raise ValueError("give one prompt source: --prompts FILE or --corpus NAME")
    if prompts is not None:
        rows = read_prompts(prompts, loaded.tokenizer)
    else:
        rows = corpus_prompts(corpus, split, num_prompts, prompt_tokens, loaded.tokenizer)
    evaluation = Evaluation(
        decoders,
        prompts=len(rows),
        prompt_tokens=max(len(r) for r in rows),
        max_new_tokens=max_new_tokens,
        batch_size=positive("--batch-size", batch_size),
        baseline=baseline if baseline in decoders else None,
    )
    prepare(decoders, loaded)
    evaluation.check(loaded.model, loaded.drafter)
    result = evaluation.run(loaded.model, rows, drafter=loaded.drafter)
    if plot:
        from dlm.decoding.plot import plot_acceptance

        plot_acceptance(list(result.stats.items()), plot)
    if output is not None:
        evaluation.write(Path(output), result)
    print(jsonlib.dumps(result.report, indent=2) if json else evaluation.table(result))
    return {"metrics": result.metrics, "evaluation": result.report}


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
                text = jsonlib.loads(line)["text"]
            except (jsonlib.JSONDecodeError, KeyError, TypeError):
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
    positive("--num-prompts", count)
    positive("--prompt-tokens", length)
    docs = embedded_documents(corpus, split)
    prompts = [tokenizer.encode(d.text)[:length] for d in docs[:count]]
    if not prompts:
        raise ValueError(f"the {corpus} corpus has no {split} documents")
    return prompts


def read(args: Sequence[str]) -> tuple[ArgumentParser, Namespace, dict[str, Any], dict[str, Decoder]]:
    """The parser, the parsed config, its instantiated values and the decoders, before anything is
    loaded; bad input is a ValueError."""
    functions = (short_decoders, load, label, decode)
    p = parser(PROG, __doc__, *functions, skip={"loaded"})
    config = parse(p, args, *functions)
    init = p.instantiate(config)
    if init.get("corpus") is not None and init["corpus"] not in EMBEDDED:
        raise ValueError(f"--corpus must be one of {', '.join(sorted(EMBEDDED))}, got {init['corpus']!r}")
    decoders = resolve_decoders(parameters(short_decoders, init), init["decoders"], DEFAULT, "ar")
    return p, config, init, decoders


def main(argv: Sequence[str] | None = None) -> int:
    """Bad input ends with one line on stderr and exit status 2."""
    started = time.time()
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        p, config, init, decoders = read(args)
        loaded = load(**parameters(load, init))
        out = decode(loaded, **{**parameters(decode, init), "decoders": decoders})
    except (ValueError, FileNotFoundError) as err:
        return fail(PROG, err)
    if init["output"] is not None:
        write_run(out, init, [PROG, *args], resolved(p, config), started, loaded.dtype)
    return 0


if __name__ == "__main__":
    sys.exit(main())
