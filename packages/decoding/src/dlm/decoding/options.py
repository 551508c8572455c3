"""What the decoding CLIs share (dlm-decode, dlm-eval humaneval and lm-eval, and lm-eval's `dlm`
model class): the decoders by short name, loading the model, and the run's results file.

Each CLI's parser (dlm.decoding.arguments) is built from `short_decoders` (the short way to pick
decoders: `--decoder ar self-spec fused` with `--k`, `--block-size`, `--clean`, ...), `load`
(checkpoint, drafter, dtype, device, threads) and the CLI's own function, whose `decoders` option
takes the same class_path/init_args mapping as a YAML `evaluation:` block.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from dlm.core import checks, load_model
from dlm.core.adapter import load_adapter
from dlm.core.checkpoint import CleanStream
from dlm.core.checks import DType, check_device, positive
from dlm.core.protocols import Decoder
from dlm.core.results import record, write_results
from dlm.decoding.ar import ARDecoder
from dlm.decoding.arguments import parameters
from dlm.decoding.block_diffusion import BlockDiffusionDecoder
from dlm.decoding.drafter import DrafterSpeculativeDecoder
from dlm.decoding.fused import FusedSelfSpeculativeDecoder
from dlm.decoding.self_speculative import SelfSpeculativeDecoder

DecoderName = Literal["ar", "block", "self-spec", "fused", "quadratic", "drafter"]


def short_decoders(
    decoder: list[DecoderName] | None = None,
    k: int | None = None,
    cross_block: bool = False,
    block_size: int | None = None,
    threshold: float = 0.9,
    sub_block: int | None = None,
    clean: CleanStream | None = None,
    no_fold: bool = False,
    temperature: float = 0.0,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int = 0,
    compile: bool | str | None = None,
) -> dict[str, Decoder]:
    """The decoders named, by name, built with the settings each takes.

    Args:
        decoder: Decoders by short name (ar, block, self-spec, fused, quadratic, drafter); the
            CLI's default when unset. For any other set-up give --decoders (class_path/init_args).
        k: Masks per draft block (speculative decoders); default: from the checkpoint's training
            record (the drafter's for drafter): its k, else block_size - 1.
        cross_block: Use the cross-block prediction as one more draft.
        block_size: Block diffusion: block length incl. the anchor; default: the checkpoint's.
        threshold: Block diffusion: confidence threshold.
        sub_block: Block diffusion: sub-block size.
        clean: Block diffusion: clean-stream attention (causal: tri-mode; block: conversion);
            default: the checkpoint's training record's, else causal.
        no_fold: Block diffusion: commit blocks in their own forward.
        temperature: Sampling temperature (0: greedy).
        top_k: Sample among the k most likely tokens.
        top_p: Nucleus sampling mass.
        seed: Seed of the sampling generator.
        compile: Fixed-shape compiled forwards (torch.compile; the same tokens, compile time reported
            apart): true, or a torch.compile mode (reduce-overhead: CUDA graphs on GPUs); default: on
            for CUDA, off on CPU.
    """
    sampling = dict(temperature=temperature, top_k=top_k, top_p=top_p, seed=seed, compile=compile)
    build: dict[str, Callable[[], Decoder]] = {
        "ar": lambda: ARDecoder(**sampling),
        "block": lambda: BlockDiffusionDecoder(
            block_size, threshold, sub_block, clean, False if no_fold else None, **sampling
        ),
        "self-spec": lambda: SelfSpeculativeDecoder(k, cross_block, **sampling),
        "fused": lambda: FusedSelfSpeculativeDecoder(k, quadratic=False, **sampling),
        "quadratic": lambda: FusedSelfSpeculativeDecoder(k, quadratic=True, **sampling),
        "drafter": lambda: DrafterSpeculativeDecoder(None, k, cross_block, **sampling),
    }
    return {name: build[name]() for name in dict.fromkeys(decoder or ())}


@dataclass
class Loaded:
    model: Any
    tokenizer: Any
    drafter: Any | None
    dtype: str


def load(
    checkpoint: str | None = None,
    drafter: str | None = None,
    adapter: str | None = None,
    dtype: DType = "float32",
    device: str = "cpu",
    threads: int | None = None,
) -> Loaded:
    """The model (and drafter) in eval mode on the device.

    Args:
        checkpoint: A dlm checkpoint directory, an HF directory or a dlm Lightning .ckpt.
        drafter: The drafter checkpoint of a decoder that drafts with one (drafter).
        adapter: A draft adapter directory (dlm.core.adapter) trained on the checkpoint: draft
            forwards use it, every other forward is the checkpoint's.
        dtype: The models' dtype.
        device: Where the models run.
        threads: torch CPU threads.
    """
    if threads is not None:
        positive("--threads", threads)
    where = check_device(device, "--device")
    if checkpoint is None:
        raise ValueError("--checkpoint is required: a dlm checkpoint dir, an HF dir or a dlm .ckpt")
    if threads:
        torch.set_num_threads(threads)
    torch_dtype = checks.dtype(dtype)
    model, tokenizer = load_model(checkpoint)
    if adapter is not None:
        load_adapter(model, adapter)
    model = model.to(device=where, dtype=torch_dtype).eval()
    other = None
    if drafter:
        other = load_model(drafter)[0].to(device=where, dtype=torch_dtype).eval()
    return Loaded(model, tokenizer, other, dtype)


def label(experiment: str | None = None, variant: str | None = None) -> dict[str, Any]:
    """What results.json files record so dlm-report can table a run.

    Args:
        experiment: The experiment the run belongs to (e.g. trimode, or bench).
        variant: The row this run fills in a generated table (its seed is the decoders' seed).
    """
    return {"experiment": experiment, "variant": variant}


def write_run(
    out: dict[str, Any], init: Mapping[str, Any], command: list[str], config: dict, started: float, dtype: str
) -> None:
    """`out` (the metrics and the evaluation report) as DIR/results.json, with the command, the
    resolved config, the dtype, the decoders' seed and the run's label (dlm.core.results)."""
    fields = {
        "evaluation": out["evaluation"],
        "dtype": dtype,
        "seed": init["seed"],
        **parameters(label, init),
    }
    rec = record(out["metrics"], command=command, config=config, started=started, **fields)
    write_results(Path(init["output"]) / "results.json", rec)


def resolve_decoders(
    short: Mapping[str, Any],
    decoders: Mapping[str, Decoder] | None,
    default: Sequence[str],
    first: str | None = None,
) -> dict[str, Decoder]:
    """--decoders (class_path/init_args by name) or the short names (`default` when none given;
    with `first`, that one first, e.g. "ar", the baseline, whether named or not)."""
    if decoders is not None:
        if short.get("decoder") is not None:
            raise ValueError("give --decoder (short names) or --decoders (class_path by name), not both")
        if not decoders:
            raise ValueError("--decoders names no decoder")
        return dict(decoders)
    names = short.get("decoder") or list(default)
    if first is not None:
        names = [first, *names]
    return short_decoders(**{**short, "decoder": names})


def prepare(decoders: Mapping[str, Decoder], loaded: Loaded) -> None:
    """Stop at the tokenizer's EOS where a decoder sets none; refuse a decoder that needs a drafter
    when none is loaded."""
    for name, decoder in decoders.items():
        if getattr(decoder, "eos_id", 0) is None:
            decoder.eos_id = loaded.tokenizer.eos_id
        if decoder.needs_drafter and loaded.drafter is None:
            raise ValueError(f"--decoder {name} needs --drafter PATH (a diffusion drafter checkpoint)")
