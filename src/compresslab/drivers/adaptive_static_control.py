"""Static controls for the adaptive model (issues 17 and 30): per base, the base coded with static per-channel PMFs
re-fitted on latents, with real bitstreams on Kodak through the adaptive coder (no side information but a table
index). Each control is named for what its PMF was fitted on:

- ``--fit train`` (default): one PMF fitted on the first ``--train-crops`` training crops; label
  "static (<n> train crops)" (written before issue 30 as "static re-fit"; old files read back under the new name).
- ``--fit loo``: the stronger control, fitted on the evaluation images themselves, leave-one-image-out: image i is
  coded with the PMF pooled over the other images' coded symbols (same images, same crop as the base's rd.json), so
  no image is coded with a density that saw it; label "static (leave-one-out)". The table index (2 bytes per image)
  is counted in the rate.

    python -m compresslab.drivers.adaptive_static_control --base-sweep <factorized sweep> --work <dir> \\
        [--fit train|loo] [--train-crops 200]

A base sweep of a hyperprior-family model (its rd.json's meta.model.name: hyperprior, mbt2018-mean, ...) gets the
same controls on its z (models/adaptive_base_static.py), the counterpart of ``model=adaptive model.base_model=<it>``.

A base run is a trained run folder (checkpoints/last.ckpt) or a pretrained base that adaptive_repro.py evaluated
(its rd.json's meta.checkpoint, e.g. zoo:bmshj2018-factorized/mse/3, and meta.bins for that quality).

Writes <work>/static/lambda<l>/rd.json (--fit train) or <work>/static_loo/lambda<l>/rd.json (--fit loo);
compresslab.drivers.adaptive_repro --static-dir <work>/static [--static-loo-dir <work>/static_loo] puts the curves
beside base, adaptive and ideal.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path.cwd()  # work and results folders are relative to where the command runs (a clone or any folder)

from compresslab.data.images import find_images, load_image_tensor
from compresslab.io.outdirs import guard
from compresslab.data.root import resolve_data_root
from compresslab.evaluation.evaluator import center_crop, list_eval_images
from compresslab.evaluation.results import RDMeta, RDResult, evaluate
from compresslab.models.adaptive import STATIC_LOO_LABEL, STATIC_TRAIN_LABEL, fit_static_loo, fit_static_refit
from compresslab.models.base_weights import base_size_from_checkpoint


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base-sweep", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--fit", choices=("train", "loo"), default="train",
                    help="train: one PMF on training crops; loo: per image, a PMF on the other evaluation images")
    ap.add_argument("--train-crops", type=int, default=200, help="training crops the static PMF is fitted on")
    ap.add_argument("--bins", type=int, default=256, help="PMF bins unless the base run names its own (meta.bins)")
    ap.add_argument("--kodak", help="evaluation image folder (default: <data>/kodak)")
    a = ap.parse_args(argv)
    guard(a.work, False, "--work")  # its runs are work, never published results
    root = resolve_data_root()
    kodak = Path(a.kodak) if a.kodak else root / "kodak"
    crops = ([load_image_tensor(f) for f in find_images(root / "train")[: a.train_crops]] if a.fit == "train"
             else None)
    base_runs = sorted(Path(a.base_sweep).glob("*/rd.json"))
    if not base_runs:
        raise SystemExit(f"no base runs (*/rd.json) under {a.base_sweep}")
    for rd in base_runs:
        base = RDResult.read(rd).meta
        lmbda = float(base.lmbda)
        ckpt = base.checkpoint or str(rd.parent / "checkpoints" / "last.ckpt")
        out = Path(a.work) / ("static" if a.fit == "train" else "static_loo") / f"lambda{lmbda}" / "rd.json"
        if out.exists():
            continue
        t0 = time.perf_counter()
        size = base_size_from_checkpoint(str(ckpt)) or {"N": 128, "M": 192}
        bins = int(base.extra.get("bins") or a.bins)
        images = list_eval_images(kodak, base.images or None)  # the base's own images and crop
        if a.fit == "loo" and len(images) < 2:
            print(f"lambda {lmbda}: skipped, leave-one-out needs >= 2 evaluation images (the base has {len(images)})",
                  flush=True)
            continue
        base_name = str((base.model or {}).get("name") or "factorized")
        fit_on = crops if a.fit == "train" else [center_crop(load_image_tensor(f), base.crop) for f in images]
        if base_name == "factorized":
            model = (fit_static_refit if a.fit == "train" else fit_static_loo)(str(ckpt), fit_on, bins=bins, **size)
        else:  # a hyperprior-family base: the controls code its z (models/adaptive_base_static)
            from compresslab.models.adaptive_base_static import fit_static_on_base

            model = fit_static_on_base(str(ckpt), base_name, fit_on, loo=a.fit == "loo", bins=bins, **size)
        on_base = {} if base_name == "factorized" else {"base_model": base_name}
        if a.fit == "train":
            label = STATIC_TRAIN_LABEL.format(n=len(crops))
            extra = {"base_ckpt": str(ckpt), "train_crops": len(crops), "fit": "train crops", **on_base}
            desc = f"base {ckpt} with one static PMF re-fitted on {len(crops)} training crops; no side information"
        else:
            label = STATIC_LOO_LABEL
            extra = {"base_ckpt": str(ckpt), "fit": "leave-one-image-out on the evaluation images",
                     "fit_images_per_table": len(images) - 1, **on_base}
            desc = (f"base {ckpt}; each image coded with a static PMF fitted on the other {len(images) - 1} "
                    f"evaluation images' latents (leave-one-out); side information: a 2-byte table index")
        model.update(force=False)
        rd_meta = RDMeta(model={"name": "static-refit" if a.fit == "train" else "static-loo"}, lmbda=lmbda,
                         dataset="kodak", crop=base.crop, label=label, checkpoint=str(ckpt),
                         recipe="adaptive_static_control", extra=extra)
        res = evaluate(model, images, rd_meta, description=desc)
        res.meta.extra["wall_s"] = round(time.perf_counter() - t0, 1)
        res.write(out)
        print(f"lambda {lmbda}: {label} {res.mean['bpp']:.4f} bpp, {res.mean['psnr-rgb']:.3f} dB, "
              f"real/est {res.mean['bpp_ratio']:.4f} ({res.meta.extra['wall_s']} s)", flush=True)


if __name__ == "__main__":
    from compresslab.errors import ConfigError

    try:
        main()
    except ConfigError as e:  # an output folder it may not write (published results without --publish): one line
        sys.exit(f"config error: {e}")
