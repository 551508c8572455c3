"""dlm-distill: a model's own greedy answers, for training on them (self-distillation).

    dlm-distill --config apps/drafter/distill/tiny.yaml

The teacher is the drafter's target, or the checkpoint a tri-mode or conversion run starts from
(the model answers itself). Prompts come from a prompt source (`prompts:`, e.g.
dlm.training.StdlibCodeTasks: the stdlib's documented functions in the instruct framing; an answer
ends at EOS, its closing code fence or `continuation_len` tokens; prompts longer than `prefix_len`
tokens are skipped and counted) or, without one, from corpus prefixes: packed samples of `prefix_len` tokens from each corpus split (PackedTextDataModule,
the same tokenisation and split as training), evenly spaced over the split. The decoder (from the
config: dlm.decoding.ARDecoder, greedy, so training never imports dlm.decoding) continues each by
`continuation_len` tokens with the KV cache. The output directory holds meta.json (the settings and
the target's path and fingerprint, which DistilledDataModule / DrafterModule check) and, per split,
`datasets` shards of rows {index, prefix, continuation}. Each shard is written to a temporary
directory and renamed into place, so an interrupted run resumes at the first missing shard.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any, Literal

import torch
from jsonargparse import ActionConfigFile, ArgumentParser
from tqdm import tqdm

from dlm.core.checks import check_device
from dlm.core.corpora import SPLITS
from dlm.core.protocols import Decoder
from dlm.training.data.module import PackedTextDataModule
from dlm.training.drafter.target import load_target
from dlm.training.prompts import PromptSource

META = "meta.json"


def distill(
    target: str,
    out: str,
    decoder: Decoder,
    corpus: str = "stdlib-code",
    prompts: PromptSource | None = None,
    samples: dict[str, int] | None = None,
    prefix_len: int = 64,
    continuation_len: int = 64,
    shard_size: int = 256,
    batch_size: int = 32,
    dtype: Literal["float32", "bfloat16", "float16"] = "float32",
    device: str = "cpu",
    text_field: str = "text",
    hub_config: str | None = None,
    max_documents: int | None = None,
    validation_fraction: float = 0.01,
    test_fraction: float = 0.01,
    cache_dir: str | None = None,
    worker: int = 0,
    workers: int = 1,
    progress: bool = True,
) -> Path:
    """Write (or complete) the distilled dataset at `out`; returns its path.

    Args:
        target: The AR target (dlm directory, HF directory or dlm .ckpt).
        out: Output directory.
        decoder: A greedy decoder (dlm.decoding.ARDecoder) run with the target as its model.
        corpus: As PackedTextDataModule's corpus (embedded name, local files or HF hub name).
        prompts: A prompt source (dlm.training.StdlibCodeTasks, ...) instead of corpus prefixes.
        samples: Prompts per split, e.g. {train: 2048, validation: 64, test: 64}, evenly spaced
            over what the split holds.
        prefix_len: Tokens per corpus prefix; with a prompt source, the longest prompt kept.
        continuation_len: Tokens the target generates after each prefix.
        shard_size: Rows per shard (the unit of resumption).
        batch_size: Prefixes per generate call.
        dtype: The target's dtype while generating (its fingerprint is taken as stored).
        device: Where the target runs.
        text_field, hub_config, max_documents, validation_fraction, test_fraction, cache_dir: As
            PackedTextDataModule's (use the training run's split fractions).
        worker, workers: This process writes the shards whose number is worker mod workers, so
            several processes (a SLURM array, one GPU each) share the work; a rerun of any of them
            resumes its own shards.
        progress: Show a progress bar.
    """
    samples = {"train": 1024, "validation": 32, "test": 32} if samples is None else dict(samples)
    for name, value in (("prefix_len", prefix_len), ("continuation_len", continuation_len),
                        ("shard_size", shard_size), ("batch_size", batch_size)):  # fmt: skip
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    for split, n in samples.items():
        if split not in SPLITS or isinstance(n, bool) or not isinstance(n, int) or n <= 0:
            raise ValueError(f"samples must map splits {SPLITS} to positive counts, got {split}: {n!r}")
    if not (isinstance(workers, int) and isinstance(worker, int) and 0 <= worker < workers):
        raise ValueError(f"worker must be in [0, workers), got worker={worker!r}, workers={workers!r}")
    sampler = getattr(decoder, "sampler", None)
    if sampler is not None and not getattr(sampler, "greedy", True):
        raise ValueError(
            "distillation needs a greedy decoder (temperature 0): drafts are scored against argmax"
        )
    check_device(device)
    frozen = load_target(target, dtype)
    model, tokenizer = frozen.model.to(device), frozen.tokenizer
    if prefix_len + continuation_len > model.config.max_seq_len:
        raise ValueError(
            f"prefix_len {prefix_len} + continuation_len {continuation_len} exceed the target's "
            f"max_seq_len {model.config.max_seq_len}"
        )
    meta = {
        "format": 1,
        "target": {"path": str(target), "fingerprint": frozen.fingerprint},
        "tokenizer": tokenizer.to_spec().get("kind"),
        "prompts": None if prompts is None else prompts.describe(),
        "decoder": type(decoder).__name__,
        "corpus": None if prompts is not None else corpus,
        "split_fractions": [validation_fraction, test_fraction],
        "samples": samples,
        "prefix_len": prefix_len,
        "continuation_len": continuation_len,
        "shard_size": shard_size,
    }
    root = Path(out)
    if prompts is None:
        data = PackedTextDataModule(
            corpus, prefix_len, batch_size, tokenizer=tokenizer, vocab_size=model.config.vocab_size,
            text_field=text_field, hub_config=hub_config, max_documents=max_documents,
            validation_fraction=validation_fraction, test_fraction=test_fraction, cache_dir=cache_dir,
        )  # fmt: skip
        sources = {split: PrefixList(data.dataset(split)) for split in samples}
    else:
        sources = {split: encoded(prompts, split, tokenizer, prefix_len) for split in samples}
        meta["skipped_long_prompts"] = {split: source.skipped for split, source in sources.items()}
        decoder.stop = lambda out: prompts.finished(tokenizer.decode(out))
    start(root, meta)
    plan = {split: shard_plan(len(sources[split]), n, shard_size, split) for split, n in samples.items()}
    mine = {s: [i for i in range(len(p)) if i % workers == worker] for s, p in plan.items()}
    todo = {s: [i for i in shards if not shard_dir(root, s, i).is_dir()] for s, shards in mine.items()}
    total = sum(len(plan[s][i]) for s in mine for i in mine[s])
    done = total - sum(len(plan[s][i]) for s in todo for i in todo[s])
    with tqdm(total=total, initial=done, desc="distilling", unit="prefix", disable=not progress) as bar:
        for split, shards in todo.items():
            source = sources[split]
            for i in shards:
                rows = []
                indices = plan[split][i]
                for b in range(0, len(indices), batch_size):
                    chunk = indices[b : b + batch_size]
                    prefixes = [source[j] for j in chunk]
                    with torch.no_grad():
                        continuations, _ = decoder.generate(model, prefixes, continuation_len)
                    rows += [
                        {"index": j, "prefix": p, "continuation": list(c)}
                        for j, p, c in zip(chunk, prefixes, continuations, strict=True)
                    ]
                    bar.update(len(chunk))
                write_shard(rows, shard_dir(root, split, i))
    return root


class PrefixList:
    """Corpus prefixes: the packed samples of a split, as token lists."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> list[int]:
        return self.dataset[index]["tokens"].tolist()


class PromptList(list):
    """A prompt source's prompts of one split as token lists, with the count of those skipped."""

    skipped: int = 0


def encoded(prompts: PromptSource, split: str, tokenizer: Any, longest: int) -> PromptList:
    ids = [tokenizer.encode(text) for text in prompts.texts(split, tokenizer)]
    kept = PromptList(p for p in ids if 0 < len(p) <= longest)
    kept.skipped = len(ids) - len(kept)
    if not kept:
        raise ValueError(
            f"no {split} prompt of the prompt source fits in prefix_len={longest} tokens "
            f"(the shortest has {min(map(len, ids), default=0)}); raise prefix_len"
        )
    return kept


def shard_plan(available: int, n: int, shard_size: int, split: str) -> list[list[int]]:
    """The sample indices of each shard: n evenly spaced packed samples of the split."""
    if n > available:
        raise ValueError(
            f"the {split} split holds {available} prompts; asked for {n} (lower samples.{split})"
        )
    picked = [i * available // n for i in range(n)]
    return [picked[s : s + shard_size] for s in range(0, n, shard_size)]


def shard_dir(root: Path, split: str, index: int) -> Path:
    return root / split / f"shard-{index:05d}"


def start(root: Path, meta: dict[str, Any]) -> None:
    """Write meta.json, or check that an existing run had the same settings and target."""
    file = root / META
    if file.is_file():
        old = json.loads(file.read_text())
        for key, value in meta.items():
            if old.get(key) != value:
                raise ValueError(
                    f"{root} holds a distillation with {key}={old.get(key)!r}, this run has {key}={value!r}; "
                    "use another output directory (or delete it)"
                )
        return
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"cannot write the output directory {root} ({err.strerror})") from None
    tmp = root / f".{META}.{os.getpid()}.tmp"  # concurrent workers each write their own
    tmp.write_text(json.dumps(meta, indent=2))
    os.replace(tmp, file)


def write_shard(rows: list[dict[str, Any]], directory: Path) -> None:
    import datasets

    tmp = directory.with_name(f".{directory.name}.{os.getpid()}.tmp")
    for stale in directory.parent.glob(f".{directory.name}.*.tmp"):  # interrupted writes
        shutil.rmtree(stale, ignore_errors=True)
    columns = {key: [r[key] for r in rows] for key in ("index", "prefix", "continuation")}
    datasets.Dataset.from_dict(columns).save_to_disk(str(tmp))
    os.replace(tmp, directory)


def parser() -> ArgumentParser:
    p = ArgumentParser(prog="dlm-distill", description=__doc__)
    p.add_argument("--config", action=ActionConfigFile)
    p.add_function_arguments(distill, as_group=False)
    return p


def main(args: list[str] | None = None) -> None:
    """Bad input ends with one line on stderr and exit status 1 (DLM_TRACEBACK=1 shows the traceback)."""
    import datasets

    datasets.disable_progress_bars()  # one bar (ours) per run, not one per shard write
    p = parser()
    try:
        config = p.instantiate_classes(p.parse_args(args))
        config.pop("config", None)
        distill(**config)
    except (ValueError, FileNotFoundError) as err:
        if os.environ.get("DLM_TRACEBACK"):
            raise
        while err.__cause__ is not None:
            err = err.__cause__
        sys.exit(f"dlm-distill: error: {type(err).__name__}: {err}")


if __name__ == "__main__":
    main()
