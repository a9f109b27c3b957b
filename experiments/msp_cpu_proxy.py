"""MSP (fast profile) vs the scale hyperprior at an equal small CPU budget, on 4 lambdas (issue 5).

    python experiments/msp_cpu_proxy.py                 # about 75 min on 2 CPU cores
    python experiments/msp_cpu_proxy.py --summary-only  # redo the table/plot from finished sweeps
    python experiments/msp_cpu_proxy.py --recipe paper  # GPU: conf/experiment/msp_paper.yaml, 6 lambdas

Recipe: conf/experiment/msp_cpu_proxy.yaml. Both models share the conv+GDN transforms (MSP with model.transform=gdn),
so the comparison isolates the probability model. Each model's lambda sweep is one Hydra multirun in its own process
(one thread each), the two in parallel; by default each multirun starts all its lambdas at once with Hydra's
submitit_local launcher (8 one-thread processes on 2 cores finish sooner than 2 serial lanes: the MSP lane alone
would take about 100 min). `--launcher basic` runs each model's lambdas one after another. The summary (RD table with BD-rate vs the hyperprior and vs VTM, RD plot)
comes from `compresslab rd` and is copied to experiments/msp/cpu_proxy/.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
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
            cmd = [sys.executable, "train.py", "-m", f"experiment={experiment}", *sel,
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
    print(f"results: {out}")


if __name__ == "__main__":
    main()
