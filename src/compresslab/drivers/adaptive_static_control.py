"""Static re-fit control for the adaptive model (issue 17): per base, one static per-channel PMF re-fitted on
training latents, coded with real bitstreams on Kodak through the adaptive coder (no side information).

    python -m compresslab.drivers.adaptive_static_control --base-sweep <factorized sweep> --work <dir> [--train-crops 200]

A base run is a trained run folder (checkpoints/last.ckpt) or a pretrained base that adaptive_repro.py evaluated
(its rd.json's meta.checkpoint, e.g. zoo:bmshj2018-factorized/mse/3, and meta.bins for that quality).

Writes <work>/static/lambda<l>/rd.json (label "static re-fit"); compresslab.drivers.adaptive_repro --static-dir <work>/static
puts the curve beside base, adaptive and ideal.
"""

from __future__ import annotations

import argparse
from pathlib import Path

ROOT = Path.cwd()  # work and results folders are relative to where the command runs (a clone or any folder)

from compresslab.data.images import find_images, load_image_tensor, resolve_data_root
from compresslab.evaluation.evaluator import list_eval_images
from compresslab.evaluation.results import RDMeta, RDResult, evaluate
from compresslab.models.adaptive import fit_static_refit
from compresslab.models.base_weights import base_size_from_checkpoint


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base-sweep", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--train-crops", type=int, default=200, help="training crops the static PMF is fitted on")
    ap.add_argument("--bins", type=int, default=256, help="PMF bins unless the base run names its own (meta.bins)")
    a = ap.parse_args()
    root = resolve_data_root()
    crops = [load_image_tensor(f) for f in find_images(root / "train")[: a.train_crops]]
    for rd in sorted(Path(a.base_sweep).glob("*/rd.json")):
        base = RDResult.read(rd).meta
        meta = {"images": base.images, "crop": base.crop, "bins": base.extra.get("bins")}
        lmbda = float(base.lmbda)
        ckpt = base.checkpoint or str(rd.parent / "checkpoints" / "last.ckpt")
        out = Path(a.work) / "static" / f"lambda{lmbda}"
        if (out / "rd.json").exists():
            continue
        size = base_size_from_checkpoint(str(ckpt)) or {"N": 128, "M": 192}
        model = fit_static_refit(str(ckpt), crops, bins=int(meta.get("bins") or a.bins), **size)
        model.update(force=False)
        rd_meta = RDMeta(model={"name": "static-refit"}, lmbda=lmbda, dataset="kodak", crop=meta.get("crop"),
                         label="static re-fit", checkpoint=str(ckpt), recipe="adaptive_static_control",
                         extra={"base_ckpt": str(ckpt), "train_crops": len(crops)})
        rd = evaluate(model, list_eval_images(root / "kodak", meta.get("images")), rd_meta,
                      description=f"base {ckpt} with one static PMF re-fitted on {len(crops)} training crops; no "
                                  f"side information")
        rd.write(out / "rd.json")
        print(f"lambda {lmbda}: static re-fit {rd.mean['bpp']:.4f} bpp, {rd.mean['psnr-rgb']:.3f} dB, "
              f"real/est {rd.mean['bpp_ratio']:.4f}", flush=True)


if __name__ == "__main__":
    main()
