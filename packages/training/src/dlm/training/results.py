"""ResultsWriter: every `dlm fit` / `dlm test` leaves one small results file.

The `dlm` CLI adds it to every run (options under `--results.*`; `--results.enabled false` turns it
off). After each stage it (re)writes one JSON file (dlm.core.results): the stage metrics Lightning
holds (train/, val/, test/), the Evaluation's report, the resolved config, the git commit, the
machine, the precision, the wall time (from the CLI's start, else from the first stage's) and
the command. With
`test_after_fit` the file holds both stages. Only global rank zero writes.

`experiment`, `variant` and `seed` make the file aggregatable (`dlm-report` groups by variant and
pairs by seed): the experiment defaults to `<x>` of the first `apps/<x>/configs/...` config, the
variant to that config's name, the seed to `seed_everything`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch

from dlm.core.results import git_commit, record, write_results


def scalars(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Lightning's logged values as plain floats (one-element tensors included), sorted by key."""
    out = {}
    for key, value in metrics.items():
        if isinstance(value, torch.Tensor):
            if value.numel() != 1:
                continue
            value = value.item()
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        out[str(key)] = float(value)
    return dict(sorted(out.items()))


def default_names(config_files: list[str]) -> tuple[str | None, str | None]:
    """(experiment, variant) from the first config under apps/<experiment>/: ("conversion", "tiny")
    for apps/conversion/configs/tiny.yaml."""
    for name in config_files:
        parts = Path(name).parts
        if "apps" in parts and parts.index("apps") + 2 < len(parts):
            return parts[parts.index("apps") + 1], Path(name).stem
    return None, Path(config_files[0]).stem if config_files else None


class ResultsWriter(pl.Callback):
    """Write the run's results file after fit and after test.

    Args:
        enabled: Write the file (false: this callback does nothing).
        path: Where (default: `<trainer.default_root_dir>/results.json`).
        experiment: The experiment the run belongs to (default: from the config's apps/<x>/ path).
        variant: The variant of that experiment (default: the first config file's name).
    """

    def __init__(
        self,
        enabled: bool = True,
        path: str | None = None,
        experiment: str | None = None,
        variant: str | None = None,
    ) -> None:
        self.enabled = enabled
        self.path = path
        self.experiment = experiment
        self.variant = variant
        self.command: list[str] | None = None
        self.config: dict[str, Any] | None = None
        self.seed: int | None = None
        self.started: float | None = None
        self.commit: str | None = None
        self.stages: list[str] = []
        self.metrics: dict[str, float] = {}
        self.steps: int | None = None
        self.written: Path | None = None

    def bind(
        self,
        command: list[str],
        config: dict[str, Any],
        config_files: list[str],
        started: float | None = None,
    ) -> None:
        """What the CLI knows and the trainer does not: the command line, the resolved config and
        when the CLI started (time.time())."""
        self.command, self.config = command, config
        self.started = started if started is not None else time.time()
        self.commit = git_commit()  # the code this run started from: HEAD may move while it runs
        experiment, variant = default_names(config_files)
        self.experiment = self.experiment or experiment
        self.variant = self.variant or variant
        seed = config.get("seed_everything")
        self.seed = seed if isinstance(seed, int) and not isinstance(seed, bool) else None

    def start(self) -> None:
        if self.started is None:
            self.started = time.time()

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.start()

    def on_test_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.start()

    def on_load_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        # Testing a checkpoint leaves trainer.global_step at 0: the model's steps are the checkpoint's.
        self.steps = checkpoint.get("global_step")

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.steps = trainer.global_step
        self.finish("fit", trainer, pl_module)

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.finish("test", trainer, pl_module)

    def finish(self, stage: str, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.stages.append(stage)
        self.metrics.update(scalars(trainer.callback_metrics))
        if not self.enabled or not trainer.is_global_zero:
            return
        parameter = next(pl_module.parameters(), None)
        results = record(
            self.metrics,
            command=self.command,
            config=self.config,
            started=self.started,
            commit=self.commit,
            experiment=self.experiment,
            variant=self.variant,
            seed=self.seed,
            stages=list(self.stages),
            steps=self.steps if self.steps is not None else trainer.global_step,
            precision=str(trainer.precision),
            dtype=str(parameter.dtype).removeprefix("torch.") if parameter is not None else None,
            evaluation=getattr(pl_module, "evaluation_report", None),
        )
        path = Path(self.path) if self.path else Path(trainer.default_root_dir) / "results.json"
        self.written = write_results(path, results)
