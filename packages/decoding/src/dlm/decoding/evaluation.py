"""The one test-time decoding evaluation: decoders on held-out prompts, decoded in batches and
interleaved, their stats, a table, a JSON report and the acceptance plot.

`Evaluation` implements dlm.core.protocols.Evaluation, so a training module reaches it through its
YAML (`evaluation:` with `class_path: dlm.decoding.Evaluation`) without importing dlm.decoding.
dlm-decode and dlm-eval humaneval build one from their options and run it too, so every entry
point decodes in the same interleaved loop (`decode_interleaved`) and reports the same metrics
(dlm.decoding.metrics), table and JSON report; dlm-eval lm-eval, whose requests lm-eval owns,
shares the metrics and the report.
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
from dlm.core.checks import positive
from dlm.core.protocols import Decoder, LayoutMismatch, LayoutWarning, Stop
from dlm.core.results import finite
from dlm.core.stats import DecodeStats, EvaluationResult
from dlm.decoding.metrics import Runs, decode_metrics, decode_report, decode_table

Score = Callable[[Mapping[str, list[list[int]]]], Mapping[str, float]]
"""The outputs by decoder -> more "<decoder>/<metric>" numbers (e.g. dlm.decoding.tasks'
HumanEval pass@1, its interval and McNemar against the baseline)."""

Plot = Callable[[Sequence[tuple[str, DecodeStats]], str], Any]
"""(decoder name and stats pairs, PNG path) -> anything, e.g. dlm.decoding.plot.plot_acceptance."""


class Evaluation:
    """Args:
    decoders: dlm.core.protocols.Decoder objects by name (e.g. ARDecoder, SelfSpeculativeDecoder,
        DrafterSpeculativeDecoder); block sizes and k left unset come from the evaluated model.
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
        positive("prompts", prompts)
        positive("prompt_tokens", prompt_tokens)
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be a non-negative integer, got {max_new_tokens!r}")
        positive("batch_size", batch_size, optional=True)
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
        stop: Stop | None = None,
        seeds: Sequence[int] | None = None,
        score: Score | None = None,
    ) -> EvaluationResult:
        """Decode `prompts` with every decoder, batch by batch and the decoders interleaved; see
        dlm.core.protocols.Evaluation.run. With `directory`, write the table (also printed), the
        JSON report and the plot there."""
        # Checked when the module was built; binding again covers a drafter that was replaced since.
        self.bind(drafter)
        networks = [m for m in (model, drafter) if m is not None]
        was_training = [m.training for m in networks]
        for m in networks:
            m.eval()
        size = self.batch_size or len(prompts)
        passes = len(seeds) if seeds is not None else 1
        bar = progress_bar(passes * len(self.decoders) * -(-len(prompts) // size), progress)

        def advance(name: str) -> None:
            bar.set_postfix_str(name)
            bar.update()

        try:
            runs = decode_interleaved(
                self.decoders, model, prompts, self.max_new_tokens, self.batch_size, advance, stop, seeds
            )
        finally:
            bar.close()
            for m, mode in zip(networks, was_training, strict=True):
                m.train(mode)
        repeated = prompts * passes
        metrics = decode_metrics(runs, repeated, reference, self.baseline)
        outputs = {name: out for name, (out, _) in runs.items()}
        if score is not None:
            metrics.update(score(outputs))
        settings = {
            "prompts": len(prompts),
            "prompt_tokens": self.prompt_tokens,
            "max_new_tokens": self.max_new_tokens,
            "batch_size": size,
            "seeds": None if seeds is None else list(seeds),
        }
        title = self.title(prompts, drafter or model, seeds)
        report = decode_report(runs, metrics, self.decoders, title, settings, self.baseline)
        result = EvaluationResult(metrics, outputs, {n: st for n, (_, st) in runs.items()}, report)
        if directory is not None:
            markdown = self.write(Path(directory), result)
            print(f"\n{title}\n{self.table(result)}\ntable: {markdown}")
            if self.plot and any(stats.accepted for stats in result.stats.values()):
                print(f"acceptance-by-position plot: {Path(directory) / 'acceptance.png'}")
        return result

    def title(self, prompts: list[list[int]], trained: nn.Module, seeds: Sequence[int] | None = None) -> str:
        record = training_of(trained)
        block = f"; block size {record.block_size}" if record is not None and record.block_size else ""
        lengths = sorted({len(p) for p in prompts})
        tokens = f"{lengths[0]}" if len(lengths) == 1 else f"{lengths[0]}-{lengths[-1]}"
        passes = f", {len(seeds)} seeds" if seeds is not None else ""
        return (
            f"{len(prompts)} prompts of {tokens} tokens{passes}, {self.max_new_tokens} new tokens "
            f"each, decoded {self.batch_size or len(prompts)} at a time{block}"
        )

    def table(self, result: EvaluationResult) -> str:
        """The markdown table of a run's metrics (dlm.decoding.metrics.decode_table)."""
        return decode_table(list(result.outputs), result.metrics, self.baseline)

    def write(self, directory: Path, result: EvaluationResult) -> Path:
        """<report>.md (the title and the table), <report>.json (the report) and, with a plot and
        verify steps, acceptance.png; returns the table's path."""
        directory.mkdir(parents=True, exist_ok=True)
        title, table = result.report["title"], self.table(result)
        markdown = directory / f"{self.report}.md"
        markdown.write_text(f"{title}\n\n{table}\n")
        text = json.dumps(finite(result.report), indent=2)
        (directory / f"{self.report}.json").write_text(text + "\n")
        speculative = [(name, stats) for name, stats in result.stats.items() if stats.accepted]
        if self.plot and speculative:
            path = directory / "acceptance.png"
            plot = self.plot if callable(self.plot) else default_plot
            plot(speculative, str(path))
        return markdown


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
    stop: Stop | None = None,
    seeds: Sequence[int] | None = None,
) -> Runs:
    """Every decoder's (outputs, merged stats) over the prompts in batches of batch_size (None: one
    batch), interleaved: each batch is decoded by every decoder before the next batch, so a load
    change on a shared machine weighs on all of them alike and their tok/s stay comparable.
    `stop` ends rows early (set as each decoder's `stop` meanwhile); with `seeds`, the prompts
    are decoded once per seed (each decoder's `seed` set to it), the outputs seed after seed.
    `progress` is called with the decoder's name after each generate call."""
    positive("batch_size", batch_size, optional=True)
    size = batch_size or len(prompts)
    runs: Runs = {name: ([], DecodeStats()) for name in decoders}
    kept = {name: (getattr(d, "stop", None), getattr(d, "seed", None)) for name, d in decoders.items()}
    try:
        for seed in [None] if seeds is None else list(seeds):
            for decoder in decoders.values():
                decoder.stop = stop
                if seed is not None:
                    decoder.seed = seed
            for start in range(0, len(prompts), size):
                for name, decoder in decoders.items():
                    out, part = decoder.generate(model, prompts[start : start + size], max_new_tokens)
                    runs[name] = (runs[name][0] + out, runs[name][1].merged(part))
                    if progress is not None:
                        progress(name)
    finally:
        for name, decoder in decoders.items():
            decoder.stop, seed = kept[name]
            if seed is not None:
                decoder.seed = seed
    return runs
