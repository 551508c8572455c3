"""The one test-time decoding evaluation: decoders on held-out prompts, decoded in batches and
interleaved, their stats, a table, a JSON report and the acceptance plot.

`Evaluation` implements dlm.core.protocols.Evaluation, so a training module reaches it through its
YAML (`evaluation:` with `class_path: dlm.decoding.Evaluation`) without importing dlm.decoding;
dlm-decode and dlm-eval run their decoders through the same loop (`decode_interleaved`).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dlm.core.checkpoint import training_of
from dlm.core.protocols import Decoder, DecodeStats, LayoutMismatch, LayoutWarning
from dlm.decoding.metrics import (
    Runs,
    decode_metrics,
    decode_table,
    distinct_ngrams,
    reference_nll,
    verify_metrics,
)

Plot = Callable[[Sequence[tuple[str, DecodeStats]], str], Any]
"""(decoder name and stats pairs, PNG path) -> anything, e.g. dlm.decoding.plot.plot_acceptance."""


class Evaluation:
    """Args:
    decoders: dlm.core.protocols.Decoder objects by name (e.g. ARDecoder, SelfSpeculativeDecoder,
        SpeculativeDecoder); block sizes and k left unset come from the evaluated model.
    prompts: Held-out prompts per process (a training module takes the starts of its first test
        samples).
    prompt_tokens: Tokens per prompt.
    max_new_tokens: Tokens each decoder generates per prompt.
    batch_size: Prompts decoded together; None: all at once. 1 measures per-prompt latency, where a
        speculative decoder's fewer forwards show fully in tok/s (a batch waits for its slowest row).
    baseline: The decoder the others are compared with (tok/s ratio, agreement); None: none.
    plot: True (dlm.decoding.plot.plot_acceptance) or a Plot callable: saves acceptance.png beside
        the report when some decoder has verify steps; False: no plot.
    report: File name stem of the table (<report>.md) and the numbers (<report>.json).
    """

    def __init__(
        self,
        decoders: Mapping[str, Decoder],
        prompts: int = 8,
        prompt_tokens: int = 32,
        max_new_tokens: int = 32,
        batch_size: int | None = None,
        baseline: str | None = None,
        plot: bool | Plot = False,
        report: str = "decoding",
    ) -> None:
        self.decoders = dict(decoders)
        if not self.decoders:
            raise ValueError("an Evaluation needs at least one decoder")
        for name, value in (("prompts", prompts), ("prompt_tokens", prompt_tokens)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be a non-negative integer, got {max_new_tokens!r}")
        if batch_size is not None and (isinstance(batch_size, bool) or batch_size <= 0):
            raise ValueError(f"batch_size must be a positive integer or None, got {batch_size!r}")
        if baseline is not None and baseline not in self.decoders:
            raise ValueError(
                f"baseline decoder {baseline!r} is not among the decoders {sorted(self.decoders)}; "
                "add it (e.g. an ARDecoder) or set baseline: null"
            )
        if not report or Path(report).name != report:
            raise ValueError(f"report must be a plain file name stem, got {report!r}")
        self.prompts, self.prompt_tokens, self.max_new_tokens = prompts, prompt_tokens, max_new_tokens
        self.batch_size, self.baseline, self.plot, self.report = batch_size, baseline, plot, report

    def check(self, model: nn.Module, drafter: nn.Module | None = None) -> None:
        """Bind `drafter` to the decoders that need one, then check each against `model`: a
        decoder that cannot run is a ValueError naming it, a draft block other than training's a
        warning naming it."""
        self.bind(drafter)
        for name, decoder in self.decoders.items():
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    decoder.check(model)
                except LayoutMismatch as err:
                    raise ValueError(f"decoder {name!r} {err.predicate}") from None
                except ValueError as err:
                    raise ValueError(
                        f"decoder {name!r} ({type(decoder).__name__}) cannot run: {err}"
                    ) from None
            for w in caught:
                if issubclass(w.category, LayoutWarning):
                    warnings.warn(f"decoder {name!r} {w.message}", UserWarning, stacklevel=2)
                else:
                    warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)

    def bind(self, drafter: nn.Module | None) -> None:
        for name, decoder in self.decoders.items():
            if decoder.needs_drafter:
                if drafter is None:
                    raise ValueError(
                        f"decoder {name!r} ({type(decoder).__name__}) needs a drafter; none is given"
                    )
                decoder.bind_drafter(drafter)

    @torch.no_grad()
    def run(
        self,
        model: nn.Module,
        prompts: list[list[int]],
        drafter: nn.Module | None = None,
        reference: nn.Module | None = None,
        directory: str | Path | None = None,
        progress: bool = False,
    ) -> dict[str, float]:
        # Checked when the module was built; binding again covers a drafter that was replaced since.
        self.bind(drafter)
        networks = [m for m in (model, drafter) if m is not None]
        was_training = [m.training for m in networks]
        for m in networks:
            m.eval()
        size = self.batch_size or len(prompts)
        bar = progress_bar(len(self.decoders) * -(-len(prompts) // size), progress)

        def advance(name: str) -> None:
            bar.set_postfix_str(name)
            bar.update()

        try:
            runs = decode_interleaved(
                self.decoders, model, prompts, self.max_new_tokens, self.batch_size, advance
            )
        finally:
            bar.close()
            for m, mode in zip(networks, was_training, strict=True):
                m.train(mode)
        metrics = decode_metrics(runs, prompts, reference, self.baseline)
        for name, (outputs, stats) in runs.items():
            metrics[f"{name}/distinct4"] = distinct_ngrams(outputs, 4)
            metrics.update({f"{name}/{k}": v for k, v in verify_metrics(stats).items()})
        if directory is not None:
            self.write(Path(directory), runs, metrics, self.title(len(prompts), drafter or model))
        return metrics

    def title(self, count: int, trained: nn.Module) -> str:
        record = training_of(trained)
        block = f"; block size {record.block_size}" if record is not None and record.block_size else ""
        return (
            f"{count} held-out prompts of {self.prompt_tokens} tokens, {self.max_new_tokens} new tokens "
            f"each, decoded {self.batch_size or count} at a time{block}"
        )

    def write(self, directory: Path, runs: Runs, metrics: dict[str, float], title: str) -> None:
        """<report>.md (the title and the table, also printed), <report>.json (the numbers by
        decoder) and, with a plot and verify steps, acceptance.png."""
        directory.mkdir(parents=True, exist_ok=True)
        table = decode_table(list(runs), metrics, self.baseline)
        markdown = directory / f"{self.report}.md"
        markdown.write_text(f"{title}\n\n{table}\n")
        by_decoder = {
            name: {
                key.split("/", 1)[1]: value for key, value in metrics.items() if key.split("/", 1)[0] == name
            }
            for name in runs
        }
        (directory / f"{self.report}.json").write_text(json.dumps(by_decoder, indent=2, sort_keys=True))
        print(f"\n{title}\n{table}\ntable: {markdown}")
        speculative = [(name, stats) for name, (_, stats) in runs.items() if stats.accepted]
        if self.plot and speculative:
            path = directory / "acceptance.png"
            plot = self.plot if callable(self.plot) else default_plot
            plot(speculative, str(path))
            print(f"acceptance-by-position plot: {path}")


def progress_bar(total: int, enabled: bool) -> Any:
    """A tqdm bar when asked for and tqdm is installed (Lightning brings it; dlm.decoding does not
    depend on it), else a silent stand-in."""
    try:
        from tqdm.auto import tqdm
    except ImportError:
        enabled = False
    if not enabled:
        return SilentBar()
    return tqdm(total=total, desc="decoding", unit="batch")


class SilentBar:
    def set_postfix_str(self, text: str) -> None:
        pass

    def update(self) -> None:
        pass

    def close(self) -> None:
        pass


def default_plot(results: Sequence[tuple[str, DecodeStats]], path: str) -> None:
    from dlm.decoding.plot import plot_acceptance

    plot_acceptance(results, path)


def decode_interleaved(
    decoders: Mapping[str, Decoder],
    model: nn.Module,
    prompts: list[list[int]],
    max_new_tokens: int,
    batch_size: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> Runs:
    """Every decoder's (outputs, merged stats) over the prompts in batches of batch_size (None: one
    batch), interleaved: each batch is decoded by every decoder before the next batch, so a load
    change on a shared machine weighs on all of them alike and their tok/s stay comparable.
    `progress` is called with the decoder's name after each generate call."""
    size = batch_size or len(prompts)
    runs: Runs = {name: ([], DecodeStats()) for name in decoders}
    for start in range(0, len(prompts), size):
        for name, decoder in decoders.items():
            out, part = decoder.generate(model, prompts[start : start + size], max_new_tokens)
            runs[name] = (runs[name][0] + out, runs[name][1].merged(part))
            if progress is not None:
                progress(name)
    return runs


def generate_in_batches(
    decoder: Decoder,
    model: nn.Module,
    prompts: list[list[int]],
    max_new_tokens: int,
    batch_size: int | None = None,
) -> tuple[list[list[int]], DecodeStats]:
    """decoder.generate over consecutive batches of batch_size prompts (None: one batch), with the
    stats of every batch merged."""
    return decode_interleaved({"": decoder}, model, prompts, max_new_tokens, batch_size)[""]


__all__ = [
    "Evaluation",
    "Runs",
    "decode_interleaved",
    "decode_metrics",
    "decode_table",
    "distinct_ngrams",
    "generate_in_batches",
    "reference_nll",
    "verify_metrics",
]
