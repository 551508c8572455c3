"""What a decoder takes from its model's TrainingRecord (dlm.core.checkpoint): the block size and k
it leaves unset (None), and a warning when an explicit one drafts a block training never showed.

Resolution never writes to the decoder, so one decoder object serves models with different records.
"""

from __future__ import annotations

import warnings

from torch import nn

from dlm.core.checkpoint import TrainingRecord, training_of
from dlm.core.protocols import LayoutWarning


def k_for(who: str, k: int | None, model: nn.Module) -> int:
    """Masks per draft block: `k`, warned about when it is not the model's training block size - 1;
    None: the record's k, else its block_size - 1 (every position after the anchor)."""
    if k is not None:
        _warn_unlike_training(k, model)
        return k
    return trained_k(who, model, "the model")


def block_size_for(who: str, block_size: int | None, model: nn.Module) -> int:
    """The block length B: `block_size`, warned about when it is not the model's training block
    size; None: the record's."""
    if block_size is not None:
        _warn_unlike_training(block_size - 1, model)
        return block_size
    return _sized_record(who, "block_size", model, "the model").block_size


def trained_k(who: str, model: nn.Module, whose: str) -> int:
    """The k of `model`'s record, else its block_size - 1; `whose` names the model in the error."""
    _sized_record(who, "k", model, whose)
    return trained_sizes(model)[1]


def trained_sizes(model: nn.Module) -> tuple[int, int] | None:
    """(block_size, k) of `model`'s record, k its k else block_size - 1; None without a record
    or a block size in it."""
    record = training_of(model)
    if record is None or record.block_size is None:
        return None
    return record.block_size, record.k if record.k is not None else record.block_size - 1


def _warn_unlike_training(drafts: int, model: nn.Module) -> None:
    record = training_of(model)
    if record is not None and record.block_size is not None and drafts != record.block_size - 1:
        held = record.block_size - 1
        # stacklevel: past this function, k_for or block_size_for, the decoder's resolve and its
        # check or decode, to the code that called those.
        warnings.warn(
            LayoutWarning(
                f"drafts {drafts} masks per block but training blocks hold block_size - 1 = {held}"
            ),
            stacklevel=5,
        )


def _sized_record(who: str, option: str, model: nn.Module, whose: str) -> TrainingRecord:
    record = training_of(model)
    if record is None:
        raise ValueError(
            f"{who}: {option} is not set and {whose} carries no training record (dlm.json 'training') "
            f"to take it from; pass {option}="
        )
    if record.block_size is None:
        raise ValueError(
            f"{who}: {option} is not set and {whose}'s training record ({record.module}) holds no "
            f"block_size to take it from; pass {option}="
        )
    return record
