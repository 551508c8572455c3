"""An lm-eval-harness (lm-eval==0.4.13) model backed by a dlm checkpoint and any dlm decoder.

lm-eval 0.4.13 finds models only in its registry (it does not scan entry points), so `register()`
adds this class as "dlm"; `dlm-eval lm-eval` calls it, and from Python:
    from dlm.decoding.tasks.lm_eval_adapter import register; register()
    lm_eval.simple_evaluate(model="dlm", model_args="checkpoint=DIR,decoder=block", tasks=[...])

- loglikelihood, loglikelihood_rolling: exact, from the model's AR mode (one causal forward, the
  [MASK] logit removed as the decoders remove it). A model trained only for diffusion (a conversion
  checkpoint, a drafter) has no exact AR likelihood, and these refuse.
- generate_until: the configured decoder through dlm's batch loop (decode_interleaved), stopping at the task's `until`
  strings (a block crossing one is cut there) and EOS; decode stats accumulate in `self.stats`.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
import torch.nn.functional as F
from lm_eval.api.model import TemplateLM
from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

from dlm.attention import Causal
from dlm.core.checkpoint import training_of
from dlm.core.checks import positive
from dlm.core.stats import DecodeStats
from dlm.decoding.arguments import parameters
from dlm.decoding.evaluation import decode_interleaved
from dlm.decoding.metrics import decode_metrics, decode_report
from dlm.decoding.options import Loaded, load, prepare, short_decoders
from dlm.decoding.record import trained_sizes
from dlm.decoding.tasks.humaneval import StopText, cut

DIFFUSION_ONLY = {"ConversionModule", "DrafterModule"}
"""dlm.training modules whose models never learned the AR (causal, next-token) objective."""


def options(**overrides: Any) -> dict[str, Any]:
    """The dlm-eval lm-eval settings (those of short_decoders and load, max_new_tokens, batch_size)
    with their defaults, then `overrides` (lm-eval's model_args)."""
    settings: dict[str, Any] = {"max_new_tokens": 256, "batch_size": 8}
    for function in (short_decoders, load):
        for name, param in inspect.signature(function).parameters.items():
            settings[name] = param.default
    settings["decoder"] = ["ar"]
    for key, value in overrides.items():
        name = key.replace("-", "_")
        if name not in settings or name == "checkpoint":
            known = ", ".join(sorted(k for k in settings if k != "checkpoint"))
            raise ValueError(f"unknown dlm model_args key {key!r} (expected one of: {known})")
        settings[name] = value
    if isinstance(settings["decoder"], str):
        settings["decoder"] = [settings["decoder"]]
    if len(settings["decoder"]) != 1:
        raise ValueError(f"the lm-eval model runs one decoder, got {settings['decoder']}")
    return settings


class DLMEvalLM(TemplateLM):
    """lm-eval's `dlm` model: `checkpoint` (a path, or models dlm-eval loaded) and one decoder,
    configured by model_args as dlm-eval's options name them (decoder, k, block_size, ...)."""

    def __init__(self, checkpoint: str | Loaded, **model_args: Any) -> None:
        super().__init__()
        self.args = options(**model_args)
        if isinstance(checkpoint, Loaded):
            loaded = checkpoint
        else:
            loaded = load(**{**parameters(load, self.args), "checkpoint": str(checkpoint)})
        self.checkpoint = str(checkpoint) if not isinstance(checkpoint, Loaded) else "the checkpoint"
        self.loaded, self.model, self.tok, self.drafter = (
            loaded,
            loaded.model,
            loaded.tokenizer,
            loaded.drafter,
        )
        self.name = self.args["decoder"][0]
        decoders = short_decoders(**parameters(short_decoders, self.args))
        prepare(decoders, loaded)
        self.decoder = decoders[self.name]
        if self.decoder.needs_drafter:
            self.decoder.bind_drafter(self.drafter)
        self.batch_size = positive("batch_size", int(self.args["batch_size"]))
        self.stats = DecodeStats()
        self.outputs: list[list[int]] = []

    def sizes(self) -> tuple[int, int]:
        """(k, block size) as the decoder resolves them: the option, else the training record of
        the model that drafts; 0 where neither says (only a decoder that needs neither runs then)."""
        block, k = trained_sizes(self.drafter if self.name == "drafter" else self.model) or (0, 0)
        return (
            self.args["k"] if self.args["k"] is not None else k,
            self.args["block_size"] if self.args["block_size"] is not None else block,
        )

    def report(self) -> tuple[dict[str, float], dict[str, Any]]:
        """The decode metrics and report of everything generated so far (the schema of every
        decoding entry point; lm-eval's task scores are not in it)."""
        runs = {self.name: (self.outputs, self.stats)}
        metrics = decode_metrics(runs, None, None)
        title = f"lm-eval generate_until: {self.stats.rows} requests decoded by {self.name}"
        settings = {"max_new_tokens": self.args["max_new_tokens"], "batch_size": self.batch_size}
        return metrics, decode_report(runs, metrics, {self.name: self.decoder}, title, settings)

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
                f"{self.checkpoint} was trained by {record.module} (diffusion only): it has no exact "
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
            budget = int(settings.get("max_gen_toks", self.args["max_new_tokens"]))
            groups.setdefault((until, budget), []).append(i)
        answers: list[str] = [""] * len(requests)
        scratch = 2 * max(self.sizes()) + 2
        for (until, budget), members in groups.items():
            budget = min(budget, self.max_length // 2)
            room = self.max_length - budget - scratch
            prompts = [self.tok_encode(requests[i].args[0])[-room:] or [self.eot_token_id] for i in members]
            stop = StopText(self.tok.decode, until) if until else None
            runs = decode_interleaved(
                {self.name: self.decoder}, self.model, prompts, budget, self.batch_size, stop=stop
            )
            tokens_out, stats = runs[self.name]
            self.stats = self.stats.merged(stats)
            self.outputs += tokens_out
            for i, tokens in zip(members, tokens_out, strict=True):
                answers[i] = cut(self.tok.decode(tokens), until)
        return answers


def register() -> None:
    """Make `model="dlm"` (lm-eval's --model dlm) name DLMEvalLM in lm-eval's registry."""
    from lm_eval.api.registry import model_registry

    if "dlm" not in model_registry:
        model_registry.register("dlm", target=DLMEvalLM)
