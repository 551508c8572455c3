"""The decoders by CLI name, their command-line options, and how dlm-decode and dlm-eval run them:
through the evaluation's batch loop (dlm.decoding.evaluation), the one the training modules use."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from dlm.core import load_model
from dlm.core.protocols import DecodeStats, agreement
from dlm.decoding.ar import ARDecoder
from dlm.decoding.block_diffusion import BlockCommit, BlockDiffusionDecoder, CausalCommit
from dlm.decoding.drafter import SpeculativeDecoder
from dlm.decoding.evaluation import generate_in_batches
from dlm.decoding.fused import FusedSelfSpeculativeDecoder
from dlm.decoding.self_speculative import SelfSpeculativeDecoder

DTYPES = {
    "float32": torch.float32,
    "float64": torch.float64,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}


def _sampling(a: argparse.Namespace, eos_id: int | None) -> dict[str, Any]:
    return dict(temperature=a.temperature, top_k=a.top_k, top_p=a.top_p, seed=a.seed, eos_id=eos_id)


def _block(a: argparse.Namespace, eos: int | None, drafter) -> BlockDiffusionDecoder:
    return BlockDiffusionDecoder(
        block_size=a.block_size,
        threshold=a.threshold,
        sub_block=a.sub_block,
        clean=None if a.clean is None else BlockCommit() if a.clean == "block" else CausalCommit(),
        fold=False if a.no_fold else None,
        **_sampling(a, eos),
    )


DECODERS: dict[str, Callable[..., Any]] = {
    "ar": lambda a, eos, drafter: ARDecoder(**_sampling(a, eos)),
    "block": _block,
    "self-spec": lambda a, eos, drafter: SelfSpeculativeDecoder(a.k, a.cross_block, **_sampling(a, eos)),
    "fused": lambda a, eos, drafter: FusedSelfSpeculativeDecoder(a.k, quadratic=False, **_sampling(a, eos)),
    "quadratic": lambda a, eos, drafter: FusedSelfSpeculativeDecoder(
        a.k, quadratic=True, **_sampling(a, eos)
    ),
    "drafter": lambda a, eos, drafter: SpeculativeDecoder(
        _need(drafter), a.k, a.cross_block, **_sampling(a, eos)
    ),
}
"""CLI names of the decoders; each builds one from the parsed arguments."""

MASKED = {"block", "self-spec", "fused", "quadratic"}
"""Decoders that put the model's own [MASK] token in its input (drafter: the drafter's)."""


def _need(drafter):
    if drafter is None:
        raise ValueError("--decoder drafter needs --drafter PATH (a diffusion drafter checkpoint)")
    return drafter


def add_decoder_options(
    p: argparse.ArgumentParser, default: Sequence[str], max_new_tokens: int, checkpoint_required: bool = True
) -> None:
    """The options that choose and configure decoders and load the model (shared by both CLIs)."""
    p.add_argument(
        "--checkpoint",
        required=checkpoint_required,
        help="a dlm checkpoint dir, an HF dir or a dlm Lightning .ckpt",
    )
    p.add_argument(
        "--decoder", nargs="+", default=list(default), choices=list(DECODERS), help="decoders to run"
    )
    p.add_argument("--drafter", help="drafter checkpoint for --decoder drafter")
    p.add_argument("--max-new-tokens", type=int, default=max_new_tokens)
    p.add_argument("--batch-size", type=int, default=8, help="prompts decoded together")
    p.add_argument(
        "--k",
        type=int,
        default=None,
        help="masks per draft block (speculative decoders); default: from the checkpoint's dlm.json "
        "training record (the drafter's for --decoder drafter): its k, else block_size - 1",
    )
    p.add_argument(
        "--cross-block", action="store_true", help="use the cross-block prediction as one more draft"
    )
    p.add_argument(
        "--block-size",
        type=int,
        default=None,
        help="block diffusion: block length incl. the anchor; default: the checkpoint's training block_size",
    )
    p.add_argument("--threshold", type=float, default=0.9, help="block diffusion: confidence threshold")
    p.add_argument("--sub-block", type=int, default=None, help="block diffusion: sub-block size")
    p.add_argument(
        "--clean",
        choices=["causal", "block"],
        default=None,
        help="block diffusion: clean-stream attention (tri-mode: causal; conversion: block); default: "
        "block when the checkpoint's training record says its clean stream was block-causal, else causal",
    )
    p.add_argument(
        "--no-fold", action="store_true", help="block diffusion: commit blocks in their own forward"
    )
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("--top-k", type=int, default=None)
    p.add_argument("--top-p", type=float, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dtype", choices=list(DTYPES), default="float32")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")


def check_machine(args: argparse.Namespace) -> None:
    """Refuse --threads below 1 and a --device torch cannot name or allocate on, before loading."""
    if args.threads is not None and args.threads <= 0:
        raise ValueError(f"--threads must be a positive integer, got {args.threads}")
    try:
        torch.empty(0, device=torch.device(args.device))
    except (RuntimeError, AssertionError) as err:  # torch raises both for an unusable device
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"--device {args.device!r} cannot be used here ({reason})") from None


def load_models(args: argparse.Namespace) -> tuple[Any, Any, Any]:
    """(model, tokenizer, drafter or None) as the arguments say."""
    check_machine(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    model, tokenizer = load_model(args.checkpoint)
    model = model.to(device=args.device, dtype=DTYPES[args.dtype]).eval()
    drafter = None
    if args.drafter:
        drafter = load_model(args.drafter)[0].to(device=args.device, dtype=DTYPES[args.dtype]).eval()
    return model, tokenizer, drafter


def build(args: argparse.Namespace, names: Sequence[str], eos_id: int | None, drafter) -> dict[str, Any]:
    """The named decoders, AR first (the reference for agreement and speed)."""
    names = ["ar"] + [n for n in dict.fromkeys(names) if n != "ar"]
    return {n: DECODERS[n](args, eos_id, drafter) for n in names}


def check_mask(names: Sequence[str], model, drafter) -> None:
    """Refuse before any decoding when a named decoder needs a mask token its model lacks."""
    for name in names:
        who = drafter if name == "drafter" else model
        if (name in MASKED or name == "drafter") and who is not None and who.config.mask_token_id is None:
            whose = "the drafter" if name == "drafter" else "the checkpoint"
            raise ValueError(
                f"--decoder {name} needs a [MASK] token, but {whose} has none (mask_token_id is None); "
                "use --decoder ar, or a checkpoint trained for diffusion"
            )


@dataclass
class Run:
    name: str
    tokens: list[list[int]]
    stats: DecodeStats

    def row(self, ar: Run | None) -> dict[str, Any]:
        out = {"decoder": self.name, **self.stats.summary()}
        out["drafter_forwards_per_token"] = self.stats.drafter_forwards_per_token
        if ar is not None:
            out["speedup_vs_ar"] = (
                self.stats.tokens_per_second / ar.stats.tokens_per_second
                if ar.stats.tokens_per_second
                else 0.0
            )
            out["agreement_with_ar"] = agreement(self.tokens, ar.tokens)
        return out


def decode_all(
    name: str,
    decoder,
    model,
    prompts: list[list[int]],
    max_new_tokens: int,
    batch_size: int,
    stop: Callable[[list[int]], bool] | None = None,
) -> Run:
    """Decode prompts in batches of batch_size; one Run with the merged stats. `stop` (a row's
    output so far -> whether it ends here) stops a row like EOS: within a block, tokens after it
    are neither emitted nor counted."""
    if batch_size <= 0:
        raise ValueError(f"--batch-size must be positive, got {batch_size}")
    decoder.stop = stop
    return Run(name, *generate_in_batches(decoder, model, prompts, max_new_tokens, batch_size))
