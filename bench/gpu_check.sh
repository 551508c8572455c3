#!/usr/bin/env bash
# The GPU check, one command, under 5 minutes on one GPU (so a rerun fits a 15-minute device lease):
#   1. the gpu-marked tests: flex, xformers and split on CUDA, and the tiny configs' bf16-mixed and
#      16-mixed (fp16, which CPU Lightning silently turns into bf16) fits against fp32
#      (tests/test_precision.py);
#   2. flex vs split vs dense-mask SDPA at L = 1024 and 4096, bf16 (bench/attention.py);
#   3. decode tok/s of every decoder on a pattern-trained tri-mode model (bench/decoding.py), eager,
#      compiled (the CUDA default) and compiled with CUDA graphs (--compile reduce-overhead), AR,
#      self-speculation and fused.
# Each part runs under its own time limit and the script goes on after a failure; logs go to
# $OUT (the device tool's output folder) or runs/gpu_check/, and the last lines say what passed.
#
# On the lent machine (Python 3.12, torch 2.11, no network) dlm runs from its sources on PYTHONPATH;
# what it needs and that image lacks travels as wheels in .whl/ (ignored by git). Fetch them here,
# once, from the repository root:
#   echo /.whl/ >> .git/info/exclude
#   for w in jsonargparse docstring-parser typeshed-client importlib-resources datasets dill \
#            multiprocess xformers; do
#     python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#       -d .whl "$w" || echo "no wheel for $w"
#   done
# (wandb is not needed: the tests log to CSV.) xformers must match torch 2.11 / CUDA 13: pick the
# version whose METADATA requires torch==2.11.* (`unzip -p .whl/xformers-*.whl '*/METADATA' | grep
# Requires-Dist`), or delete it; without it the xformers tests skip and say why. Then run, with
# `carry: [".whl"]`:  bash bench/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-runs/gpu_check}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
export PYTHONUNBUFFERED=1 WANDB_MODE=offline
if compgen -G ".whl/*.whl" >/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || echo "gpu_check: the wheels in .whl/ did not install; parts needing them will fail"
  export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="packages/attention/src:packages/core/src:packages/decoding/src:packages/training/src:${PYTHONPATH:-}"

"$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print('torch', torch.__version__, torch.cuda.get_device_name())" \
  || exit 1
"$PY" -c "import xformers.ops" 2>/dev/null \
  || echo "gpu_check: xformers is not importable (no wheel for this torch/CUDA): its tests skip with that reason"

SUMMARY=()
part() {  # part NAME SECONDS COMMAND...: run with a limit, log to $OUT/NAME.log, remember the outcome
  local name=$1 limit=$2 start status
  shift 2
  echo "== ${name} (limit ${limit} s)"
  start=$(date +%s)
  timeout "${limit}" "$@" 2>&1 | tee "${OUT}/${name}.log"
  status=${PIPESTATUS[0]}
  SUMMARY+=("${name}: exit ${status} in $(($(date +%s) - start)) s")
}

part gpu_tests 130 "$PY" -m pytest -q -m gpu -p no:cacheprovider -o addopts="--import-mode=importlib -ra" \
  packages/attention/tests packages/core/tests packages/decoding/tests packages/training/tests tests
part attention 50 "$PY" bench/attention.py --lengths 1024 4096 --blocks 16 --dtype bfloat16 --repeats 5
part decode_model 40 "$PY" bench/decoding.py --make-pattern-checkpoint /tmp/dlm-pattern --pattern-steps 200
for compile in false true reduce-overhead; do  # 3 decoders: compiling each width takes seconds
  part "decode_compile_${compile}" 25 "$PY" bench/decoding.py --checkpoint /tmp/dlm-pattern \
    --prompts /tmp/dlm-pattern/prompts.txt --device cuda --max-new-tokens 128 --compile "${compile}" \
    --decoder ar self-spec fused
done

echo "== summary"
printf '%s\n' "${SUMMARY[@]}" | tee "${OUT}/summary.txt"
