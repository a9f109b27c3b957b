#!/usr/bin/env bash
# Real training throughput on a lent GPU (device tool): train.py with the data pipeline (PNG decode, random crops,
# workers, pinned memory), to set beside benchmarks/train_step.py's in-memory step. Carries .whl/ and
# .gpu/data/{train,val} (lossless WebP, converted back to PNG there). Steady-state s/step from the ProgressLog
# timestamps between steps 200 and 500. Usage there: bash benchmarks/data_pipeline_gpu.sh
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONUNBUFFERED=1 OUT=${OUT:-/tmp/out} PYTHONPATH=/tmp/site:src COMPRESSLAB_DATA=/tmp/data
python3 - <<'PY'
from pathlib import Path; from PIL import Image; from concurrent.futures import ProcessPoolExecutor
src, dst = Path(".gpu/data"), Path("/tmp/data")
def conv(p):
    out = dst / p.relative_to(src).with_suffix(".png"); out.parent.mkdir(parents=True, exist_ok=True); Image.open(p).save(out, compress_level=1)
with ProcessPoolExecutor(16) as ex: list(ex.map(conv, [p for d in ("train", "val") for p in (src / d).glob("*.webp")]))
PY
mkdir -p /tmp/data/kodak
row() {  # name, overrides...
  local name=$1; shift
  python3 train.py experiment=gpu_scale model=hyperprior trainer.max_steps=500 trainer.max_time=null \
    trainer.val_check_interval=500 trainer.limit_val_batches=1 callbacks.rd_eval.enabled=false \
    callbacks.progress_log.every_n_steps=100 optim.scheduler.warmup_steps=100 hydra.run.dir=/tmp/runs/$name "$@" > $OUT/$name.log 2>&1
  python3 - "$OUT/$name.log" "$name" <<'PY'
import re, sys, datetime
t = {}
for line in open(sys.argv[1]):
    m = re.match(r"\[(\S+ \S+)\].*step (\d+)/", line)
    if m: t[int(m.group(2))] = datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f")
if 200 in t and 500 in t:
    s = (t[500] - t[200]).total_seconds() / 300
    print(f"{sys.argv[2]}: {s:.4f} s/step, {16 / s:.0f} images/s (steps 200-500, batch 16, 256^2)")
else:
    print(sys.argv[2], "no timing:", sorted(t)); print(open(sys.argv[1]).read()[-2000:])
PY
}
nvidia-smi --query-gpu=name --format=csv,noheader
row cached_w3 data.cache_images=true data.num_workers=3
row decode_w6 data.cache_images=false data.num_workers=6
row decode_w2 data.cache_images=false data.num_workers=2
