# GPU run of the CPU RD recipe (experiment=rd_cpu_proxy{,_finetune}), MSP-fast (S=2, GDN transforms) and the
# hyperprior side by side. Usage: bash .gpu/proxy.sh 1|2   (stage); work dir outputs/gpu_proxy persists while warm.
# (The committed results were produced by this script's earlier form, which ran the same commands by hand.)
set -e
STAGE=$1
if [ ! -d /tmp/site/compressai ]; then pip install --no-index --no-deps --target /tmp/site .whl/*.whl -q; fi
export PYTHONPATH=/tmp/site:$PWD/src COMPRESSLAB_DATA=/tmp/data
if [ ! -d /tmp/data/kodak ]; then
python - <<'PY'
from pathlib import Path; from PIL import Image; import shutil
from concurrent.futures import ProcessPoolExecutor
src, dst = Path(".gpu/data"), Path("/tmp/data")
shutil.copytree(src / "anchors", dst / "anchors")
def conv(p):
    out = dst / p.relative_to(src).with_suffix(".png"); out.parent.mkdir(parents=True, exist_ok=True)
    Image.open(p).save(out)
with ProcessPoolExecutor(16) as ex: list(ex.map(conv, [p for d in ("kodak", "train", "val") for p in (src / d).glob("*.webp")]))
PY
fi
W=outputs/gpu_proxy
# the recipe (models, stages, budgets, lambda ladder) is conf/pipeline/msp_vs_hyperprior_gpu.yaml; this script only
# prepares the device (wheels, data) and carries results back. Checkpoints carried in from an earlier call seed stage 1.
for m in msp hyperprior; do
  d=$W/$m/pretrain; mkdir -p $d/checkpoints
  [ -f .gpu/ckpt/$m.ckpt ] && [ ! -f $d/checkpoints/last.ckpt ] && cp .gpu/ckpt/$m.ckpt $d/checkpoints/last.ckpt
done
rc=0
if [ "$STAGE" = 1 ]; then
  python -m compresslab.drivers.pipeline msp_vs_hyperprior_gpu --stages pretrain --work $W || rc=1
else
  python -m compresslab.drivers.pipeline msp_vs_hyperprior_gpu --stages sweep --work $W --out $OUT/published || rc=1
fi
mkdir -p $OUT/gpu_proxy
( cd $W && find . \( -name "*.log" -o -name "rd.json" -o -name metrics.csv -o -name config.yaml \) -exec cp --parents {} $OUT/gpu_proxy/ \; ) || true
mkdir -p $OUT/ckpt; for m in msp hyperprior; do cp $W/$m/pretrain/checkpoints/last.ckpt $OUT/ckpt/$m.ckpt 2>/dev/null || true; done
for f in $W/*/sweep/*/rd.json; do x=${f#$W/}; cp $f $OUT/rd_$(echo ${x%/rd.json} | tr / _).json; done 2>/dev/null || true
nvidia-smi --query-gpu=name,memory.used --format=csv
exit $rc
