"""dlm's ARDecoder against transformers' generate on one HF checkpoint, side by side.

    python bench/dlm_vs_transformers.py --checkpoint checkpoints/SmolLM2-135M-Instruct \
        --num-prompts 8 --max-new-tokens 64 --batch-sizes 1 8 --dtypes float32 bfloat16 float64

The prompts are the first --num-prompts HumanEval prompts (raw, no chat template), tokenized once
with the checkpoint's tokenizer and fed to both as token ids. Greedy, exactly --max-new-tokens
tokens per prompt (EOS does not stop either, so both do the same work). dlm loads the checkpoint
with dlm.core.from_hf (one [MASK] row added, its logit never chosen); transformers with
AutoModelForCausalLM (left padding and an attention mask at batch > 1). Per dtype and batch size:
tok/s of each (the best of --repeats runs, the two interleaved so they share the machine's load),
their ratio, token agreement and greedy-prefix agreement with transformers, and dlm's agreement
with its own batch-1 output. Nothing is asserted; on a shared CPU read the ratios.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch

from dlm.core import load_model
from dlm.core.checks import DTYPES
from dlm.core.stats import agreement, prefix_agreement
from dlm.decoding import ARDecoder
from dlm.decoding.tasks.humaneval import read_problems


def dlm_generate(model, prompts: list[list[int]], new: int, batch: int) -> tuple[list[list[int]], float]:
    decoder, out, seconds = ARDecoder(), [], 0.0
    for s in range(0, len(prompts), batch):
        start = time.perf_counter()
        tokens, _ = decoder.generate(model, prompts[s : s + batch], new)
        seconds += time.perf_counter() - start
        out += tokens
    return out, seconds


@torch.no_grad()
def hf_generate(
    model, prompts: list[list[int]], new: int, batch: int, pad: int
) -> tuple[list[list[int]], float]:
    out, seconds = [], 0.0
    for s in range(0, len(prompts), batch):
        chunk = prompts[s : s + batch]
        width = max(len(p) for p in chunk)
        ids = torch.tensor([[pad] * (width - len(p)) + p for p in chunk])
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in chunk])
        start = time.perf_counter()
        result = model.generate(
            input_ids=ids,
            attention_mask=mask,
            do_sample=False,
            max_new_tokens=new,
            min_new_tokens=new,
            pad_token_id=pad,
        )
        seconds += time.perf_counter() - start
        out += result[:, width:].tolist()
    return out, seconds


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="an HF checkpoint directory (config.json)")
    p.add_argument("--num-prompts", type=int, default=8)
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    p.add_argument("--dtypes", nargs="+", choices=list(DTYPES), default=["float32", "bfloat16"])
    p.add_argument("--repeats", type=int, default=1, help="timed runs of each; the fastest counts")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    from transformers import AutoModelForCausalLM

    if args.threads:
        torch.set_num_threads(args.threads)
    dlm_model, tok = load_model(args.checkpoint)
    hf_model = AutoModelForCausalLM.from_pretrained(args.checkpoint, dtype=torch.float32).eval()
    hf_model.generation_config.eos_token_id = None  # both generate exactly max_new_tokens
    prompts = [tok.encode(p["prompt"]) for p in list(read_problems().values())[: args.num_prompts]]
    new, rows = args.max_new_tokens, []
    for name in args.dtypes:
        dlm_model.to(DTYPES[name]).eval()
        hf_model.to(DTYPES[name])
        dlm_generate(dlm_model, prompts[:1], 2, 1)  # warm-up
        hf_generate(hf_model, prompts[:1], 2, 1, tok.pad_id)
        dlm_b1 = None
        for batch in args.batch_sizes:
            best_dlm = best_hf = float("inf")
            for _ in range(args.repeats):
                dlm_tokens, t = dlm_generate(dlm_model, prompts, new, batch)
                best_dlm = min(best_dlm, t)
                hf_tokens, t = hf_generate(hf_model, prompts, new, batch, tok.pad_id)
                best_hf = min(best_hf, t)
            dlm_b1 = dlm_tokens if batch == 1 else dlm_b1
            total = len(prompts) * new
            rows.append(
                {
                    "dtype": name,
                    "batch": batch,
                    "dlm_tok_s": total / best_dlm,
                    "hf_tok_s": total / best_hf,
                    "ratio": best_hf / best_dlm,
                    "agreement": agreement(dlm_tokens, hf_tokens),
                    "prefix_agreement": prefix_agreement(dlm_tokens, hf_tokens),
                    "same_tokens": sum(a == b for a, b in zip(dlm_tokens, hf_tokens, strict=True)),
                    "dlm_vs_own_batch_1": agreement(dlm_tokens, dlm_b1) if dlm_b1 is not None else None,
                }
            )
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    head = "| dtype | batch | dlm tok/s | transformers tok/s | dlm / transformers | token agreement | prefix agreement | identical rows | dlm vs its batch 1 |"
    lines = [head, "|" + "---|" * 9]
    for r in rows:
        own = "-" if r["dlm_vs_own_batch_1"] is None else f"{r['dlm_vs_own_batch_1']:.3f}"
        lines.append(
            f"| {r['dtype']} | {r['batch']} | {r['dlm_tok_s']:.1f} | {r['hf_tok_s']:.1f} | {r['ratio']:.2f}x | "
            f"{r['agreement']:.3f} | {r['prefix_agreement']:.3f} | {r['same_tokens']}/{len(prompts)} | {own} |"
        )
    print(json.dumps(rows) if args.json else "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
