"""An lm-eval-harness (lm-eval==0.4.13) model backed by a dlm checkpoint and any dlm decoder.

lm-eval 0.4.13 finds models only in its registry (it does not scan entry points), so `register()`
adds this class as "dlm"; `dlm-eval lm-eval` calls it, and from Python:
    from dlm.decoding.eval.lm_eval_adapter import register; register()
    lm_eval.simple_evaluate(model="dlm", model_args="checkpoint=DIR,decoder=block", tasks=[...])

- loglikelihood, loglikelihood_rolling: exact, from the model's AR mode (one causal forward, the
  [MASK] logit removed as the decoders remove it). A model trained only for diffusion (a conversion
  checkpoint, a drafter) has no exact AR likelihood, and these refuse.
- generate_until: the configured decoder through dlm's batch loop, stopping at the task's `until`
  strings (a block crossing one is cut there) and EOS; decode stats accumulate in `self.stats`.
"""

from __future__ import annotations

import argparse
from typing import Any

import torch
import torch.nn.functional as F
from lm_eval.api.model import TemplateLM
from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

from dlm.attention import Causal
from dlm.core.checkpoint import training_of
from dlm.core.protocols import DecodeStats
from dlm.decoding.batching import add_decoder_options, build, check_mask, decode_all, load_models
from dlm.decoding.eval.humaneval import StopText, cut
from dlm.decoding.record import trained_sizes

DIFFUSION_ONLY = {"ConversionModule", "DrafterModule"}
"""dlm.training modules whose models never learned the AR (causal, next-token) objective."""


def options(checkpoint: str, **overrides: Any) -> argparse.Namespace:
    """dlm-decode's options with their defaults, then `overrides` (lm-eval's model_args)."""
    p = argparse.ArgumentParser(prog="dlm")
    add_decoder_options(p, default=["ar"], max_new_tokens=256)
    args = p.parse_args(["--checkpoint", str(checkpoint)])
    for key, value in overrides.items():
        name = key.replace("-", "_")
        if not hasattr(args, name):
            known = ", ".join(sorted(vars(args)))
            raise ValueError(f"unknown dlm model_args key {key!r} (expected one of: {known})")
        setattr(args, name, value)
    if isinstance(args.decoder, str):
        args.decoder = [args.decoder]
    if len(args.decoder) != 1:
        raise ValueError(f"the lm-eval model runs one decoder, got {args.decoder}")
    return args


class DLMEvalLM(TemplateLM):
    def __init__(self, checkpoint: str, **model_args: Any) -> None:
        super().__init__()
        self.args = options(checkpoint, **model_args)
        self.model, self.tok, self.drafter = load_models(self.args)
        check_mask(self.args.decoder, self.model, self.drafter)
        self.name = self.args.decoder[0]
        self.decoder = build(self.args, self.args.decoder, self.tok.eos_id, self.drafter)[self.name]
        self.batch_size = int(self.args.batch_size)
        self.stats = DecodeStats()

    def sizes(self) -> tuple[int, int]:
        """(k, block size) as the decoder resolves them: the option, else the training record of
        the model that drafts; 0 where neither says (only a decoder that needs neither runs then)."""
        block, k = trained_sizes(self.drafter if self.name == "drafter" else self.model) or (0, 0)
        return (
            self.args.k if self.args.k is not None else k,
            self.args.block_size if self.args.block_size is not None else block,
        )

    @property
    def eot_token_id(self) -> int:
        return self.tok.eos_id

    @property
    def max_length(self) -> int:
        return self.model.config.max_seq_len

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, **kwargs) -> list[int]:
        return self.tok.encode(string)

    def tok_decode(self, tokens, **kwargs) -> str:
        return self.tok.decode(tokens)

    def _check_ar(self) -> None:
        record = training_of(self.model)
        if record is not None and record.module in DIFFUSION_ONLY:
            raise ValueError(
                f"{self.args.checkpoint} was trained by {record.module} (diffusion only): it has no exact "
                "AR likelihood, so loglikelihood tasks are refused; use an AR or tri-mode checkpoint, "
                "or generate_until tasks"
            )

    @torch.no_grad()
    def _logprobs(self, pairs: list[tuple[list[int], list[int]]]) -> list[tuple[float, bool]]:
        """(sum of log p(continuation | context), whether it is the greedy continuation) per pair,
        from causal forwards over right-padded batches, left-truncated to the model's length."""
        self._check_ar()
        out = []
        device = next(self.model.parameters()).device
        mask_id = self.model.config.mask_token_id
        for start in range(0, len(pairs), self.batch_size):
            chunk = pairs[start : start + self.batch_size]
            inputs = [(c + x)[-(self.max_length + 1) :][:-1] for c, x in chunk]
            width = max(len(i) for i in inputs)
            tokens = torch.tensor([i + [0] * (width - len(i)) for i in inputs], device=device)
            positions = torch.arange(width, device=device).expand(len(inputs), -1)
            logits = self.model(tokens, positions, Causal()).double()
            if mask_id is not None:
                logits[..., mask_id] = float("-inf")
            logp = F.log_softmax(logits, -1).cpu()
            for row, ((_, cont), inp) in enumerate(zip(chunk, inputs, strict=True)):
                span = logp[row, len(inp) - len(cont) : len(inp)]
                target = torch.tensor(cont)
                score = float(span.gather(1, target[:, None]).sum())
                out.append((score, bool((span.argmax(-1) == target).all())))
        return out

    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, **kwargs):
        return self._logprobs([(ctx, cont) for _, ctx, cont in requests])

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        results = []
        for request in requests:
            (text,) = request.args
            windows = [
                make_disjoint_window(w)
                for w in get_rolling_token_windows(
                    self.tok_encode(text), self.eot_token_id, self.max_length, context_len=1
                )
            ]
            results.append(sum(score for score, _ in self._logprobs(windows)))
        return results

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        """Requests grouped by their generation settings, each group through the batch loop."""
        groups: dict[tuple, list[int]] = {}
        for i, request in enumerate(requests):
            _, settings = request.args
            until = settings.get("until", [])
            until = (until,) if isinstance(until, str) else tuple(until)
            budget = int(settings.get("max_gen_toks", self.args.max_new_tokens))
            groups.setdefault((until, budget), []).append(i)
        answers: list[str] = [""] * len(requests)
        scratch = 2 * max(self.sizes()) + 2
        for (until, budget), members in groups.items():
            budget = min(budget, self.max_length // 2)
            room = self.max_length - budget - scratch
            prompts = [self.tok_encode(requests[i].args[0])[-room:] or [self.eot_token_id] for i in members]
            stop = StopText(self.tok.decode, until) if until else None
            run = decode_all(self.name, self.decoder, self.model, prompts, budget, self.batch_size, stop)
            self.stats = self.stats.merged(run.stats)
            for i, tokens in zip(members, run.tokens, strict=True):
                answers[i] = cut(self.tok.decode(tokens), until)
        return answers


def register() -> None:
    """Make `model="dlm"` (lm-eval's --model dlm) name DLMEvalLM in lm-eval's registry."""
    from lm_eval.api.registry import model_registry

    if "dlm" not in model_registry:
        model_registry.register("dlm", target=DLMEvalLM)
