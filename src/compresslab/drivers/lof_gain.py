"""BD-rate gain of latent overfitting (LOF) per model, on real bitstreams, and its encode-time cost.

    python -m compresslab.drivers.lof_gain RUN_OR_SWEEP_DIRS... [--images 4 --crop 256 --steps 150 --lr 5e-3 --lr-end 5e-4]
    python -m compresslab.drivers.lof_gain zoo:bmshj2018-hyperprior/mse/1 ... zoo:bmshj2018-hyperprior/mse/8 --work outputs/lof_zoo

For every run directory (one trained checkpoint each) or CompressAI pretrained model (``zoo:`` spec, its lambda from
CompressAI's MSE ladder; evaluations under --work) the same Kodak images are evaluated twice, without and with
LOF (paired, same crop), into <run>/lof_eval/{plain,lof}.json. Curves are grouped by model; the table gives
BD-rate of "model +LOF" against "model" (akima), the mean encode seconds per image with and without LOF, and the
mean iterations used. Defaults are a CPU proxy (few images, centre crops, a short schedule); the spec's defaults are
--images 24 --crop 0 --steps 500 --lr 1e-3 --lr-end 1e-4 --patience 50.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timezone
from collections import defaultdict
from pathlib import Path

ROOT = Path.cwd()  # work and results folders are relative to where the command runs (a clone or any folder)

from compresslab.data.root import resolve_data_root
from compresslab.rd.bdrate import bd_rate
from compresslab.rd.curves import plot_curves
from compresslab.evaluation.evaluator import list_eval_images
from compresslab.evaluation.lof_config import LOFConfig
from compresslab.evaluation.metrics import mean_rd_cost
from compresslab.evaluation.results import evaluate_checkpoint
from compresslab.io.outdirs import add_output_args, output_dir
from compresslab.io.zoo import is_zoo
from compresslab.provenance import command_record


def sources(paths: list[str], work: Path) -> list[tuple[str, Path, str]]:
    """(name, folder for lof_eval/, checkpoint or zoo spec) per model."""
    out = []
    for p in paths:
        if is_zoo(p):
            out.append((p, work / p.replace(":", "_").replace("/", "_"), p))
            continue
        out += [(c.parents[1].name, c.parents[1], str(c)) for c in sorted(Path(p).rglob("checkpoints/last.ckpt"))]
    return out


def evaluate(run: Path, ckpt: str, files, crop, cfg: LOFConfig | None) -> dict:
    # not named rd.json: these are subset evaluations and must not join a run's Kodak RD curve
    target = run / "lof_eval" / ("lof.json" if cfg else "plain.json")
    if target.exists():
        return json.loads(target.read_text())
    rd = evaluate_checkpoint(ckpt, files, crop=crop, lof=cfg, dataset="kodak", image_source="kodak",
                             recipe="lof_gain")
    rd.write(target)
    return rd.to_json()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("paths", nargs="+")
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--crop", type=int, default=256)
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--lr", type=float, default=5e-3)
    ap.add_argument("--lr-end", type=float, default=5e-4)
    ap.add_argument("--patience", type=int, default=30)
    add_output_args(ap, "experiments/lof/cpu_proxy", what="table, plot and provenance")
    ap.add_argument("--work", default=str(ROOT / "outputs" / "lof_zoo"), help="evaluations of zoo: models")
    a = ap.parse_args()
    out = output_dir(a.out, a.publish, ROOT / "experiments" / "lof" / "cpu_proxy", "lof_gain")  # before any work
    started, t0 = datetime.now(timezone.utc).isoformat(timespec="seconds"), time.monotonic()
    cfg = LOFConfig(steps=a.steps, lr=a.lr, lr_end=a.lr_end, patience=a.patience)
    files = list_eval_images(resolve_data_root() / "kodak", a.images)
    crop = a.crop or None
    curves: dict[str, list[dict]] = defaultdict(list)
    for name, run, ckpt in sources(a.paths, Path(a.work)):
        for doc in (evaluate(run, ckpt, files, crop, None), evaluate(run, ckpt, files, crop, cfg)):
            pt = {k: v[0] for k, v in doc["results"].items()}
            pt["lof_iterations"] = sum(r.get("lof_iterations", 0) for r in doc["per_image"]) / len(doc["per_image"])
            pt["lmbda"] = doc["meta"]["lambda"]
            pt["rd_cost"] = mean_rd_cost(doc["per_image"], pt["lmbda"])
            curves[doc["name"]].append(pt)
            print(f"{name}: {doc['name']}: {pt['bpp']:.4f} bpp {pt['psnr-rgb']:.2f} dB "
                  f"enc {pt['encoding_time']:.2f}s", flush=True)
    out.mkdir(parents=True, exist_ok=True)
    lines = [f"LOF: {cfg}; {len(files)} Kodak images" + (f", centre {crop}x{crop} crops" if crop else ""),
             "", "| model | points | BD-rate +LOF vs without (akima) | BD-PSNR | per lambda: bpp change | "
             "PSNR change | RD-cost change (λ·255²·MSE+bpp, mean over images) | enc s/img without | enc s/img with | "
             "mean iterations |", "|---|---|---|---|---|---|---|---|---|---|"]
    for name in sorted(n for n in curves if not n.endswith("+LOF")):
        base, lof = sorted(curves[name], key=lambda p: p["lmbda"]), sorted(curves[name + " +LOF"],
                                                                            key=lambda p: p["lmbda"])
        r = bd_rate([p["bpp"] for p in base], [p["psnr-rgb"] for p in base], [p["bpp"] for p in lof],
                    [p["psnr-rgb"] for p in lof], method="akima")
        per = [100 * (lp["bpp"] / bp["bpp"] - 1) for bp, lp in zip(base, lof)]
        dpsnr = [lp["psnr-rgb"] - bp["psnr-rgb"] for bp, lp in zip(base, lof)]
        dcost = [100 * (lp["rd_cost"] / bp["rd_cost"] - 1) for bp, lp in zip(base, lof)]
        bd = f"{r.bd_rate:+.2f} %" if r.available else f"unavailable: {r.reason}"
        bdp = f"{r.bd_psnr:+.3f} dB" if r.available else ""
        enc0 = sum(p["encoding_time"] for p in base) / len(base)
        enc1 = sum(p["encoding_time"] for p in lof) / len(lof)
        its = sum(p["lof_iterations"] for p in lof) / len(lof)
        lines.append(f"| {name} | {len(base)} | {bd} | {bdp} | {', '.join(f'{v:+.2f}' for v in per)} % | "
                     f"{', '.join(f'{v:+.3f}' for v in dpsnr)} dB | {', '.join(f'{v:+.2f}' for v in dcost)} % | "
                     f"{enc0:.2f} | {enc1:.1f} | {its:.0f} |")
    (out / "lof_gain.md").write_text("\n".join(lines) + "\n")
    plot_curves(dict(curves), out / "rd_lof.png", context=(), title="LOF vs without (same images)")
    (out / "curves.json").write_text(json.dumps(curves, indent=2))
    # the folder's README renders command, machine, commit and wall time from this file
    record = command_record(["python", "-m", "compresslab.drivers.lof_gain", *sys.argv[1:]], started,
                            time.monotonic() - t0)
    (out / "provenance.json").write_text(json.dumps(record, indent=2))
    print("\n".join(lines))


if __name__ == "__main__":
    from compresslab.errors import ConfigError

    try:
        main()
    except ConfigError as e:  # an output folder it may not write (published results without --publish): one line
        sys.exit(f"config error: {e}")
