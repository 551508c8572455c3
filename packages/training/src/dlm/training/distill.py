"""Deprecated alias of dlm.training.drafter.distill, removed in the next release."""

from dlm.training.drafter.distill import (
    META,
    check_device,
    distill,
    main,
    parser,
    shard_dir,
    shard_plan,
    start,
    write_shard,
)

__all__ = [
    "META",
    "check_device",
    "distill",
    "main",
    "parser",
    "shard_dir",
    "shard_plan",
    "start",
    "write_shard",
]

if __name__ == "__main__":  # `python -m dlm.training.distill` ran dlm-distill
    main()
