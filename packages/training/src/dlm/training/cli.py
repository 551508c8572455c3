"""The `dlm` console script: one LightningCLI (fit, validate, test, predict) for every experiment.

Model and data are chosen by class_path (subclass mode; data: any LightningDataModule with seq_len,
tokenizer and vocab_size arguments, e.g. PackedTextDataModule or DistilledDataModule). The model
owns the tokenizer (a checkpoint brings its own), so two links run from the instantiated model to
the data module: the tokenizer the corpus is tokenised with, and the vocabulary size every token id
must fall below.
The data module's seq_len is linked to the model, which checks it against max_seq_len and the
block size before anything runs.

Every run also gets, unless its YAML configures its own: atomic checkpoint files
(dlm.training.checkpointing), a NonFiniteGuard that stops on a NaN/inf loss, and RandomState, which
makes `--ckpt_path last` resume exactly; and a ResultsWriter (dlm.training.results, options under
`--results.*`) writes the run's results.json: metrics, evaluation report, resolved config, commit,
machine, command. Before it starts, a run checks that its output
directories are writable and that a multi-node run was started by a launcher (dlm.training.preflight).
"""

from __future__ import annotations

import inspect
import os
import re
import sys
import time
from typing import Any

import torch.distributed as dist
import yaml
from jsonargparse import ArgumentError
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch import LightningDataModule, Trainer
from lightning.pytorch.cli import LightningCLI

from dlm.training.checkpointing import AtomicCheckpointIO, check_checkpoint_file
from dlm.training.guard import NonFiniteGuard
from dlm.training.modules import LanguageModule
from dlm.training.preflight import check_launcher, check_writable
from dlm.training.random_state import RandomState
from dlm.training.results import ResultsWriter

# Errors raised for bad input or a failed run, by our code or by Lightning for a trainer setting
# (MisconfigurationException) or an accelerator whose library is missing: one line, no traceback.
EXPECTED = (ValueError, FileNotFoundError, FloatingPointError, MisconfigurationException, ModuleNotFoundError)


def model_tokenizer(model: LanguageModule) -> Any:
    return model.tokenizer


def model_vocab_size(model: LanguageModule) -> int:
    return model.model.config.vocab_size


class DLMCLI(LightningCLI):
    def __init__(self, *cli_args: Any, args: Any = None, **kwargs: Any) -> None:
        # The command a results file records (the script and its arguments, or the arguments given)
        # and the start of its wall time: before parsing, the model and the data.
        self.started = time.time()
        self.command = (
            [os.path.basename(sys.argv[0]), *sys.argv[1:]] if args is None else ["dlm", *map(str, args)]
        )
        super().__init__(*cli_args, args=args, **kwargs)

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_lightning_class_args(ResultsWriter, "results")
        parser.link_arguments("data.init_args.seq_len", "model.init_args.seq_len")
        parser.link_arguments("model", "data.init_args.tokenizer", model_tokenizer, apply_on="instantiate")
        parser.link_arguments("model", "data.init_args.vocab_size", model_vocab_size, apply_on="instantiate")
        parser.add_argument(
            "--test_after_fit",
            type=bool,
            default=False,
            help="After `fit`, run `test` on the trained model and print the test metrics.",
        )

    def after_fit(self) -> None:
        if self.config[self.subcommand].get("test_after_fit"):
            self.trainer.test(self.model, datamodule=self.datamodule)

    def parse_arguments(self, parser: Any, args: Any) -> None:
        super().parse_arguments(parser, args)
        subcommand = self.config.get("subcommand")
        if subcommand is not None:  # LightningCLI reads the checkpoint next: fail clearly first
            check_checkpoint_file(self.config[subcommand].get("ckpt_path"))

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        trainer = super().instantiate_trainer(**kwargs)
        with_defaults(trainer)
        self.bind_results(trainer)
        check_launcher(trainer)
        check_writable(trainer, fitting=self.subcommand == "fit")
        return trainer

    def bind_results(self, trainer: Trainer) -> None:
        """Give the ResultsWriter the command line and the fully resolved config."""
        writers = [c for c in trainer.callbacks if isinstance(c, ResultsWriter)]
        if not writers or self.subcommand is None:
            return
        config = self.config[self.subcommand]
        parser = self._parser(self.subcommand)
        # None values kept: jsonargparse >= 4.49 calls the option skip_unset, before it skip_none.
        keep = "skip_unset" if "skip_unset" in inspect.signature(parser.dump).parameters else "skip_none"
        resolved = yaml.safe_load(parser.dump(config, **{keep: False}))
        files = [str(path) for path in config.get("config") or []]
        for writer in writers:
            writer.bind(self.command, resolved, files, started=self.started)


def with_defaults(trainer: Trainer) -> None:
    """Atomic checkpoint files, a NonFiniteGuard and RandomState, where the run has none of its own."""
    if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
        trainer.strategy.checkpoint_io = AtomicCheckpointIO()
    for kind in (NonFiniteGuard, RandomState):
        if not any(isinstance(callback, kind) for callback in trainer.callbacks):
            trainer.callbacks.insert(0, kind())


def root_cause(err: BaseException) -> BaseException:
    """The innermost cause: jsonargparse wraps an error raised in a class's __init__ into a
    "does not validate against any of the Union subtypes" ValueError."""
    while err.__cause__ is not None:
        err = err.__cause__
    return err


def parse_error(message: str) -> str:
    """One line from jsonargparse's nested report: the dotted key and the innermost reason.

    A report nests `Parser key "x":` and `Problem with given class_path 'y':` headings over
    "Does not validate against any of the Union subtypes" boilerplate; the deepest other line is
    the reason, e.g. `model.pattern: class_path 'dlm.training.NoSuchPattern': module 'dlm.training'
    has no attribute 'NoSuchPattern'`.
    """
    noise = ("Does not validate", "Subtypes:", "Errors:", "Given value", "- Expected a <class 'NoneType'>")
    path: list[tuple[int, str]] = []
    best: tuple[int, list[str], str] | None = None
    for raw in message.splitlines():
        line = raw.strip()
        if not line or line.startswith(noise):
            continue
        depth = len(raw) - len(raw.lstrip())
        path = [(d, text) for d, text in path if d < depth]
        text = line.lstrip("- ")
        if text.endswith(":"):
            path.append((depth, text[:-1]))
        elif best is None or depth > best[0]:
            best = (depth, [heading for _, heading in path], text)
    if best is None:
        return " ".join(line.strip() for line in message.splitlines() if line.strip())
    _, headings, reason = best
    keys = [m.group(1) for h in headings if (m := re.fullmatch(r'Parser key "(.+)"', h))]
    if m := re.fullmatch(r'Parser key "(.+?)": (.+)', reason):
        keys, reason = [*keys, m.group(1)], m.group(2)
    parts = [".".join(keys)] if keys else []
    if headings and (m := re.fullmatch(r"Problem with given class_path '(.+)'", headings[-1])):
        parts.append(f"class_path {m.group(1)!r}")
    return ": ".join([*parts, reason])


def main(args: list[str] | None = None) -> None:
    """Run the CLI. Bad input ends with one line on stderr: exit status 2 for a configuration that
    does not parse, 1 for a value our code refuses (ValueError, FileNotFoundError) or a run stopped
    by a non-finite loss; set DLM_TRACEBACK=1 to see the traceback instead."""
    # Offline unless the user chose a mode: runs work without network and sync later (wandb sync).
    os.environ.setdefault("WANDB_MODE", "offline")
    try:
        DLMCLI(
            LanguageModule,
            LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            save_config_kwargs={"overwrite": True},
            parser_kwargs={"exit_on_error": False},
            args=args,
        )
    except ArgumentError as err:
        if os.environ.get("DLM_TRACEBACK"):
            raise
        print(f"dlm: error: {parse_error(str(err))} (see dlm --help)", file=sys.stderr)
        sys.exit(2)
    except EXPECTED as err:
        if os.environ.get("DLM_TRACEBACK"):
            raise
        cause = root_cause(err)
        sys.exit(f"dlm: error: {type(cause).__name__}: {cause}")
    # Lightning destroys only an NCCL process group at exit. A gloo one (CPU runs) is freed while the
    # interpreter finalizes, when a gloo thread that takes the GIL (to free a tensor) is ended by
    # pthread_exit, whose unwind aborts the rank after a successful run ("terminate called without an
    # active exception"). Destroyed here, it stops its threads while Python is whole.
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
