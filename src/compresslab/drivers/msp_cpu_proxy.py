"""MSP (fast profile) vs the scale hyperprior at an equal small CPU budget, on 4 lambdas (issue 5).

    python -m compresslab.drivers.msp_cpu_proxy                 # about 75 min on 2 CPU cores
    python -m compresslab.drivers.msp_cpu_proxy --summary-only  # redo the table/plot from finished sweeps
    python -m compresslab.drivers.msp_cpu_proxy --recipe paper  # GPU: conf/experiment/msp_paper.yaml, 6 lambdas

Recipe: conf/experiment/msp_cpu_proxy.yaml. Both models share the conv+GDN transforms (MSP with model.transform=gdn),
so the comparison isolates the probability model. Each model's lambda sweep is one Hydra multirun in its own process
(one thread each), the two in parallel; by default each multirun starts all its lambdas at once with Hydra's
submitit_local launcher (8 one-thread processes on 2 cores finish sooner than 2 serial lanes: the MSP lane alone
would take about 100 min). `--launcher basic` runs each model's lambdas one after another.

Outputs in experiments/msp/<recipe>/: the RD table (BD-rate vs the hyperprior and vs VTM, stated method), plot and
summary from `compresslab rd`, and per_lambda.md/json: at each lambda both models' Kodak bpp/PSNR, the change in
bpp, PSNR and RD cost (the training objective, mean over images of bpp + lambda*255^2*MSE), the real/estimated bpp
ratio and encode/decode seconds per image. The per-lambda cost change is defined even when a curve is not
monotone enough for BD-rate.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path.cwd()  # work and results folders are relative to where the command runs (a clone or any folder)
from compresslab.evaluation.metrics import mean_rd_cost

#: per recipe: the experiment config, each model's overrides, the default lambdas
RECIPES = {
    "cpu_proxy": ("msp_cpu_proxy", {"msp": ["model=msp/fast", "model.transform=gdn"], "hyperprior": ["model=hyperprior"]},
                  [0.013, 0.025, 0.0483, 0.0932]),
    "paper": ("msp_paper", {"msp": [], "hyperprior": ["model=hyperprior", "model.N=128", "model.M=192"]},
              [0.0018, 0.0035, 0.0067, 0.013, 0.025, 0.0483]),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--recipe", choices=sorted(RECIPES), default="cpu_proxy")
    ap.add_argument("--lambdas", nargs="+", type=float, default=None)
    ap.add_argument("--work", default=None, help="run dirs (default outputs/msp_<recipe>)")
    ap.add_argument("--out", default=None, help="tables and plot (default experiments/msp/<recipe>)")
    ap.add_argument("--summary-only", action="store_true")
    ap.add_argument("--launcher", choices=["submitit_local", "basic", "slurm"], default=None,
                    help="Hydra launcher (default: submitit_local for cpu_proxy, basic for paper: one GPU, one job)")
    ap.add_argument("overrides", nargs="*", help="extra Hydra overrides for both models (e.g. trainer.max_steps=20)")
    a = ap.parse_args()
    experiment, models, lambdas = RECIPES[a.recipe]
    lambdas = a.lambdas or lambdas
    launcher = a.launcher or ("submitit_local" if a.recipe == "cpu_proxy" else "basic")
    work = Path(a.work or ROOT / "outputs" / f"msp_{a.recipe}")
    work.mkdir(parents=True, exist_ok=True)
    if not a.summary_only:
        procs = {}
        for m, sel in models.items():
            cmd = [sys.executable, "-m", "compresslab", "train", "-m", f"experiment={experiment}", *sel,
                   "lambda=" + ",".join(map(str, lambdas)), f"hydra.sweep.dir={work / m / 'sweep'}",
                   f"hydra/launcher={launcher}", *a.overrides]
            if launcher == "submitit_local":
                cmd.append("hydra.launcher.timeout_min=1440")  # its default, 60 min, would kill the jobs
            log = open(work / f"{m}.log", "w")
            procs[m] = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
            print(f"{m}: log {work / f'{m}.log'}", flush=True)
        codes = {m: p.wait() for m, p in procs.items()}
        if any(codes.values()):
            sys.exit(f"failed: {codes}")
    summary = work / "rd_summary"
    subprocess.run([sys.executable, "-m", "compresslab.cli", "rd", *(str(work / m / "sweep") for m in models),
                    "--reference", "hyperprior", "--out", str(summary)], cwd=ROOT, check=True)
    out = Path(a.out or ROOT / "experiments" / "msp" / a.recipe)
    out.mkdir(parents=True, exist_ok=True)
    for f in summary.iterdir():
        if f.is_file():
            shutil.copy2(f, out / f.name)
    per_lambda_table({m: work / m / "sweep" for m in models}, out)
    print(f"results: {out}")


def _results(sweep: Path) -> dict[float, dict]:
    found = {}
    for f in sorted(sweep.glob("*/rd.json")):
        d = json.loads(f.read_text())
        found[float(d["meta"]["lambda"])] = d
    return found


def per_lambda_table(sweeps: dict[str, Path], out: Path, test: str = "msp", ref: str = "hyperprior") -> None:
    t, r = _results(sweeps[test]), _results(sweeps[ref])
    rows = []
    for lmbda in sorted(set(t) & set(r)):
        a, b = t[lmbda], r[lmbda]
        ra, rb = a["results"], b["results"]
        rows.append({
            "lambda": lmbda, "images": len(a["per_image"]),
            f"{ref}_bpp": rb["bpp"][0], f"{ref}_psnr": rb["psnr-rgb"][0],
            f"{test}_bpp": ra["bpp"][0], f"{test}_psnr": ra["psnr-rgb"][0],
            "bpp_change_pct": 100 * (ra["bpp"][0] / rb["bpp"][0] - 1),
            "psnr_change_db": ra["psnr-rgb"][0] - rb["psnr-rgb"][0],
            "rd_cost_change_pct": 100 * (mean_rd_cost(a["per_image"], lmbda) / mean_rd_cost(b["per_image"], lmbda) - 1),
            f"{test}_real_over_est_bpp": ra["bpp_ratio"][0], f"{ref}_real_over_est_bpp": rb["bpp_ratio"][0],
            f"{test}_enc_s": ra["encoding_time"][0], f"{test}_dec_s": ra["decoding_time"][0],
            f"{ref}_enc_s": rb["encoding_time"][0], f"{ref}_dec_s": rb["decoding_time"][0],
        })
    if not rows:
        print("per-lambda table: no lambda finished for both models")
        return
    mean = sum(x["rd_cost_change_pct"] for x in rows) / len(rows)
    (out / "per_lambda.json").write_text(json.dumps({"rows": rows, "mean_rd_cost_change_pct": mean}, indent=2))
    lines = [f"# {test} vs {ref} per lambda (Kodak, real bitstreams; RD cost = mean over images of "
             "bpp + lambda*255^2*MSE, the training objective)", "",
             f"| lambda | {ref} bpp | {ref} PSNR | {test} bpp | {test} PSNR | bpp change | PSNR change | RD-cost change "
             f"| real/est bpp ({test}, {ref}) | enc s/img ({test}, {ref}) | dec s/img ({test}, {ref}) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for x in rows:
        lines.append(
            f"| {x['lambda']} | {x[f'{ref}_bpp']:.4f} | {x[f'{ref}_psnr']:.2f} | {x[f'{test}_bpp']:.4f} "
            f"| {x[f'{test}_psnr']:.2f} | {x['bpp_change_pct']:+.1f} % | {x['psnr_change_db']:+.2f} dB "
            f"| {x['rd_cost_change_pct']:+.2f} % | {x[f'{test}_real_over_est_bpp']:.3f}, {x[f'{ref}_real_over_est_bpp']:.3f} "
            f"| {x[f'{test}_enc_s']:.2f}, {x[f'{ref}_enc_s']:.2f} | {x[f'{test}_dec_s']:.2f}, {x[f'{ref}_dec_s']:.2f} |")
    lines += ["", f"Mean RD-cost change over {len(rows)} lambdas: {mean:+.2f} %"]
    (out / "per_lambda.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
