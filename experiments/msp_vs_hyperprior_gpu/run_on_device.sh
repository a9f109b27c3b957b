# GPU run of the CPU RD recipe (experiment=rd_cpu_proxy{,_finetune}), MSP-fast (S=2, GDN transforms) and the
# hyperprior side by side. Usage: bash .gpu/proxy.sh 1|2   (stage); work dir outputs/gpu_proxy persists while warm.
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
declare -A MODEL=([msp]="model=msp/fast model.transform=gdn model.scales=2" [hyperprior]="model=hyperprior")
COMMON=""
pids=()
for m in msp hyperprior; do
  if [ "$STAGE" = 1 ]; then
    d=$W/$m/pretrain; mkdir -p $d/checkpoints
    [ -f .gpu/ckpt/$m.ckpt ] && [ ! -f $d/checkpoints/last.ckpt ] && cp .gpu/ckpt/$m.ckpt $d/checkpoints/last.ckpt
    R=""; [ -f $d/checkpoints/last.ckpt ] && R="ckpt_path=$d/checkpoints/last.ckpt"
    python train.py experiment=rd_gpu_short ${MODEL[$m]} $COMMON hydra.run.dir=$d trainer.max_time=00:00:08:00 $R > $W/$m-stage1.log 2>&1 &
    pids+=($!)
  else
    mkdir -p $W/$m/pretrain/checkpoints
    [ -f $W/$m/pretrain/checkpoints/last.ckpt ] || cp .gpu/ckpt/$m.ckpt $W/$m/pretrain/checkpoints/last.ckpt
    for l in 0.0018 0.0035 0.0067 0.013; do
      d=$W/$m/sweep/lambda$l; mkdir -p $d
      R=""; [ -f $d/checkpoints/last.ckpt ] && R="ckpt_path=$d/checkpoints/last.ckpt"
      python train.py experiment=rd_gpu_short_finetune ${MODEL[$m]} $COMMON lambda=$l init_from=$W/$m/pretrain/checkpoints/last.ckpt hydra.run.dir=$d trainer.max_time=00:00:07:00 $R > $W/$m-$l.log 2>&1 &
      pids+=($!)
    done
  fi
done
rc=0; for p in ${pids[@]}; do wait $p || rc=1; done
mkdir -p $OUT/gpu_proxy
( cd $W && find . \( -name "*.log" -o -name "rd.json" -o -name metrics.csv -o -name config.yaml \) -exec cp --parents {} $OUT/gpu_proxy/ \; ) || true
mkdir -p $OUT/ckpt; for m in msp hyperprior; do cp $W/$m/pretrain/checkpoints/last.ckpt $OUT/ckpt/$m.ckpt 2>/dev/null || true; done
for f in $W/*/sweep/*/rd.json; do x=${f#$W/}; cp $f $OUT/rd_$(echo ${x%/rd.json} | tr / _).json; done 2>/dev/null || true
nvidia-smi --query-gpu=name,memory.used --format=csv
exit $rc
