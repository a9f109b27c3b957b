#!/usr/bin/env bash
# On a lent GPU (device tool), one command: (1) files encoded on the GPU decoded on the CPU in another process and the
# reverse, for our models and the CompressAI family with and without model.deterministic_coding
# (benchmarks/cross_device_files.py); (2) speed.compile=step on CUDA against the plain loop (benchmarks/train_step.py
# --fused). Carries .whl/ (cp312 wheels: compressai, hydra-core, omegaconf, antlr4, pytorch-msssim, bjontegaard) and
# .gpu/ (kodak/: the first Kodak images; ckpt/: trained checkpoints, weights only). Results and logs go to $OUT.
#   bash benchmarks/cross_device_gpu.sh [IMAGES]     (SKIP_FUSED=1 XD_CPUS=0-15 XD_TIMEOUT=180: part 1 alone)
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONUNBUFFERED=1 OUT=${OUT:-/tmp/out} PYTHONPATH=/tmp/site:src COMPRESSLAB_DATA=$PWD/.gpu OMP_NUM_THREADS=1
IMAGES=${1:-6}
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee $OUT/machine.txt
python3 -c "import torch, compressai; print('torch', torch.__version__, 'compressai', compressai.__version__, 'cuda',
torch.version.cuda, 'cpus', __import__('os').cpu_count())" | tee -a $OUT/machine.txt
git rev-parse HEAD 2>/dev/null | tee -a $OUT/machine.txt

ck() { [ -f .gpu/ckpt/$1.ckpt ] && echo "--ckpt $1=.gpu/ckpt/$1.ckpt"; }
SPECS="factorized hyperprior hyperprior:det=0 mbt2018-mean mbt2018-mean:det=0 mbt2018:det=0 mbt2018:det=1
       cheng2020-anchor:det=0 cheng2020-anchor:det=1 msp"
xd() {  # encode-device decode-device spec
  local tag=$1-$2-${3//[:=]/_}
  timeout ${XD_TIMEOUT:-300} python3 benchmarks/cross_device_files.py --encode $1 --decode $2 --images $IMAGES --models $3 \
    $(ck ${3%%:*}) --work /tmp/xd/$tag --out $OUT/xd/$tag.json > $OUT/xd/$tag.log 2>&1
  echo "[$tag rc=$?] $(grep -- '->' $OUT/xd/$tag.log | tail -1)"
}
export -f xd ck; export IMAGES
mkdir -p $OUT/xd /tmp/xd
# (1) in the background on 12 of the 16 cores; (2) on the other 4, so their timings share no core with (1)
(for s in $SPECS; do echo "cuda cpu $s"; echo "cpu cuda $s"; done | taskset -c ${XD_CPUS:-0-11} xargs -P 20 -L 1 bash -c 'xd $0 $1 $2' \
  > $OUT/xd_summary.txt 2>&1) &
XD=$!
B="taskset -c 12-15 python3 benchmarks/train_step.py --device cuda --N 128 --M 192 --batch 16 --patch 256 --steps 50 --rounds 3 --fused"
fused() {  # model, extra environment
  env $2 timeout 150 $B --model $1 > $OUT/fused_$1.log 2>&1; echo "fused $1 ($2) rc=$?"
  grep -E "^(model=|plain|Compress|ratio|fused|compilation)|Error" $OUT/fused_$1.log | tail -8
}
if [ -z "${SKIP_FUSED:-}" ]; then  # SKIP_FUSED=1 XD_CPUS=0-15: the cross-device part alone, on every core
  fused factorized X=1 || true
  grep -q "^ratio fused" $OUT/fused_factorized.log || fused factorized TORCHINDUCTOR_USE_STATIC_CUDA_LAUNCHER=0
  fused hyperprior X=1
fi
wait $XD
cat $OUT/xd_summary.txt
cd $OUT/xd && python3 -c "
import glob, json
r = {}
for f in sorted(glob.glob('*.json')):
    d = json.load(open(f)); r[f[:-5]] = d
json.dump(r, open('../cross_device_files.json', 'w'), indent=1)" && cd - >/dev/null
tar czf $OUT/xd_logs.tgz -C $OUT xd && rm -rf $OUT/xd
