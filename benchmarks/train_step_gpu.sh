#!/usr/bin/env bash
# The throughput table of the README on a lent GPU (device tool): ours vs the plain loop for factorized and
# hyperprior, fp32 / bf16-mixed / channels_last / compile, plus where our step blocks the host (--sync-debug).
# Usage there: bash benchmarks/train_step_gpu.sh [ROW ...]   (wheels in .whl/, results in $OUT; default: every row)
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONUNBUFFERED=1 OUT=${OUT:-/tmp/out} PYTHONPATH=/tmp/site:src
B="python3 benchmarks/train_step.py --device cuda --N 128 --M 192 --batch 16 --patch 256 --steps 100 --rounds 5"
ROWS=" $* "
run() {  # name, limit, args...
  local name=$1 limit=$2; shift 2
  [ "$ROWS" = "  " ] || [[ "$ROWS" == *" $name "* ]] || return 0
  echo "== $name"; timeout $limit $B "$@" > $OUT/$name.log 2>&1
  grep -E "^(model=|plain|Compress|ratio|host)|^ +[0-9]+x " $OUT/$name.log | tee $OUT/$name.txt
}
nvidia-smi --query-gpu=name,driver_version,memory.used --format=csv,noheader
python3 -c "import torch, lightning; print('torch', torch.__version__, 'lightning', lightning.__version__)"
run hyperprior_fp32 90 --model hyperprior --sync-debug
run hyperprior_fp32_syncfree_plain 70 --model hyperprior --plain-sync-free
run factorized_fp32 90 --model factorized --sync-debug
run factorized_fp32_syncfree_plain 70 --model factorized --plain-sync-free
run hyperprior_bf16 70 --model hyperprior --precision bf16-mixed
run factorized_bf16 70 --model factorized --precision bf16-mixed
run hyperprior_bf16_cl 70 --model hyperprior --precision bf16-mixed --channels-last
run factorized_fp32_compile 150 --model factorized --compile --rounds 3
rm -f $OUT/*.log
