"""Real-scale factorized / hyperprior runs on one GPU in <= 10-minute chunks (issue 12, item 6).

    python -m compresslab.drivers.gpu_scale --stage 1 --minutes 8 --work outputs/gpu_scale    # constant LR, max_time-bound
    python -m compresslab.drivers.gpu_scale --stage 2 --minutes 7 --work outputs/gpu_scale    # cosine decay, then Kodak eval

One process per (model, lambda), all on the same GPU. Stage 1 (conf/experiment/gpu_scale.yaml) trains at a constant
LR until trainer.max_time; stage 2 (gpu_scale_decay.yaml) starts from its weights and decays the LR to 1 % over the
number of steps stage 1 reached in the same wall time, scaled to stage 2's minutes, so the schedule ends inside
the chunk whatever the GPU's speed. Each stage ends with the real-bitstream Kodak evaluation (rd.json), and the
summary (table, plot, BD-rate vs kodak/vtm) is written by `compresslab rd` into <work>/summary.
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path.cwd()  # work and results folders are relative to where the command runs (a clone or any folder)


def last_step(run_dir: Path) -> int:
    rows = list(csv.DictReader(open(run_dir / "metrics.csv")))
    return max(int(r["step"]) for r in rows if r.get("step"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stage", type=int, choices=(1, 2), required=True)
    ap.add_argument("--minutes", type=float, required=True, help="wall-clock training budget of this chunk")
    ap.add_argument("--work", default=str(ROOT / "outputs" / "gpu_scale"))
    ap.add_argument("--models", nargs="+", default=["factorized", "hyperprior"])
    ap.add_argument("--lambdas", nargs="+", default=["0.0018", "0.0035", "0.0067", "0.013"])
    ap.add_argument("--stage1-minutes", type=float, default=None, help="stage 1's budget (stage 2 scales its steps)")
    ap.add_argument("overrides", nargs="*", help="extra Hydra overrides for every run")
    a = ap.parse_args()
    work = Path(a.work).resolve()
    hh, mm = divmod(int(a.minutes * 60), 60)
    max_time = f"00:00:{hh:02d}:{mm:02d}"
    procs = []
    for m in a.models:
        for lam in a.lambdas:
            s1 = work / "stage1" / f"{m}-{lam}"
            run_dir = work / f"stage{a.stage}" / f"{m}-{lam}"
            args = [sys.executable, "-m", "compresslab", "train", f"model={m}", f"lambda={lam}", f"hydra.run.dir={run_dir}",
                    f"trainer.max_time={max_time}", "threads=1", *a.overrides]
            if a.stage == 1:
                args.insert(2, "experiment=gpu_scale")
            else:
                steps1 = last_step(s1)
                steps = int(steps1 * a.minutes / (a.stage1_minutes or a.minutes) * 0.92)  # 8 % margin
                args[2:2] = ["experiment=gpu_scale_decay", f"init_from={s1 / 'checkpoints' / 'last.ckpt'}",
                             f"trainer.max_steps={steps}"]
                print(f"{m} lambda={lam}: stage 1 reached step {steps1}; stage 2 decays over {steps} steps", flush=True)
            run_dir.mkdir(parents=True, exist_ok=True)
            log = open(run_dir.parent / f"{m}-{lam}.log", "w")
            procs.append((f"{m}-{lam}", subprocess.Popen(args, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)))
    t0 = time.time()
    codes = {}
    for name, p in procs:
        codes[name] = p.wait()
        print(f"{name}: exit {codes[name]} after {time.time() - t0:.0f} s", flush=True)
    sweeps = [str(work / f"stage{a.stage}")]
    subprocess.run([sys.executable, "-m", "compresslab.cli", "rd", *sweeps, "--reference", "factorized",
                    "--anchor", "kodak/vtm", "--out", str(work / f"summary_stage{a.stage}")], cwd=ROOT)
    if any(codes.values()):
        sys.exit(f"failed runs: {[k for k, v in codes.items() if v]}")


if __name__ == "__main__":
    main()
