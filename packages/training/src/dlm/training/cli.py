"""The `dlm` console script: one LightningCLI (fit, validate, test, predict) for every experiment.

Model and data are chosen by class_path (subclass mode; data: any LightningDataModule with seq_len,
tokenizer and vocab_size arguments, e.g. PackedTextDataModule or DistilledDataModule). The model
owns the tokenizer (a checkpoint brings its own), so two links run from the instantiated model to
the data module: the tokenizer the corpus is tokenised with, and the vocabulary size every token id
must fall below.
The data module's seq_len is linked to the model, which checks it against max_seq_len and the
block size before anything runs.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from lightning.pytorch import LightningDataModule
from lightning.pytorch.cli import LightningCLI

from dlm.training.modules import LanguageModule


def model_tokenizer(model: LanguageModule) -> Any:
    return model.tokenizer


def model_vocab_size(model: LanguageModule) -> int:
    return model.model.config.vocab_size


class DLMCLI(LightningCLI):
    def add_arguments_to_parser(self, parser) -> None:
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


def root_cause(err: BaseException) -> BaseException:
    """The innermost cause: jsonargparse wraps an error raised in a class's __init__ into a
    "does not validate against any of the Union subtypes" ValueError."""
    while err.__cause__ is not None:
        err = err.__cause__
    return err


def main(args: list[str] | None = None) -> None:
    """Run the CLI. Bad input (ValueError, FileNotFoundError) ends with one line on stderr and exit
    status 1; set DLM_TRACEBACK=1 to see the traceback instead."""
    # Offline unless the user chose a mode: runs work without network and sync later (wandb sync).
    os.environ.setdefault("WANDB_MODE", "offline")
    try:
        DLMCLI(
            LanguageModule,
            LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            save_config_kwargs={"overwrite": True},
            args=args,
        )
    except (ValueError, FileNotFoundError) as err:
        if os.environ.get("DLM_TRACEBACK"):
            raise
        cause = root_cause(err)
        sys.exit(f"dlm: error: {type(cause).__name__}: {cause}")


if __name__ == "__main__":
    main()
