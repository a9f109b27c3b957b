"""CPU RD sweep for the factorized and hyperprior models: pretrain at a middle lambda, fine-tune to each lambda,
evaluate on Kodak with real bitstreams; the multirun's end-of-sweep hook writes the RD table, plot and BD-rates.

    python experiments/rd_cpu_proxy.py [--models factorized hyperprior] [--lambdas ...]

The recipe (stage sizes, schedule, the lambda ladder) lives in conf/experiment/rd_cpu_proxy{,_finetune}.yaml;
--lambdas only overrides the ladder. Progress: each model's log names its stage; `tail -f <work>/<model>.log`.

Each model's two stages run in their own process (one thread each), so two models use both cores.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def pipeline(model: str, lambdas: list[float], work: Path) -> list[str]:
    pre = work / model / "pretrain"
    ckpt = pre / "checkpoints" / "last.ckpt"
    py = sys.executable
    stage1 = [py, "train.py", "experiment=rd_cpu_proxy", f"model={model}", f"hydra.run.dir={pre}"]
    stage2 = [py, "train.py", "-m", "experiment=rd_cpu_proxy_finetune", f"model={model}", f"init_from={ckpt}",
              *(["lambda=" + ",".join(map(str, lambdas))] if lambdas else []), f"hydra.sweep.dir={work / model / 'sweep'}"]
    script = (f"echo '== {model}: stage 1 (warm start) -> {pre}'; [ -f {ckpt} ] || {' '.join(stage1)} && "
              f"echo '== {model}: stage 2 (per-lambda) -> {work / model / 'sweep'}' && {' '.join(stage2)}")
    return ["bash", "-c", script]


def publish(sweeps: list[Path], dest: Path) -> list[str]:
    """Each run's rd.json into <dest>/runs/<model>-lambda<l>/ (paths relative to the repository), so the committed
    folder is written by the driver, not copied by hand."""
    out = []
    for sw in sweeps:
        for rd in sorted(sw.glob("*/rd.json")):
            doc = json.loads(rd.read_text())
            meta = doc["meta"]
            meta["run_dir"] = str(rd.parent.resolve().relative_to(ROOT))
            target = dest / "runs" / f"{meta['model']['name']}-lambda{meta['lambda']}"
            target.mkdir(parents=True, exist_ok=True)
            (target / "rd.json").write_text(json.dumps(doc, indent=2))
            out.append(str(target))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="+", default=["factorized", "hyperprior"])
    ap.add_argument("--lambdas", nargs="+", type=float, default=None, help="default: the ladder in the YAML")
    ap.add_argument("--work", default=str(ROOT / "outputs" / "rd_cpu_proxy"))
    ap.add_argument("--out", default=str(ROOT / "experiments" / "rd_cpu_proxy"), help="committed results folder")
    ap.add_argument("--publish-only", action="store_true", help="skip training; publish and summarise finished runs")
    a = ap.parse_args()
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    procs = []
    for m in ([] if a.publish_only else a.models):
        log = open(work / f"{m}.log", "w")
        procs.append(subprocess.Popen(pipeline(m, a.lambdas, work), cwd=ROOT, stdout=log, stderr=subprocess.STDOUT))
        print(f"{m}: log {work / f'{m}.log'}")
    codes = [p.wait() for p in procs]
    if any(codes):
        sys.exit(f"failed: {dict(zip(a.models, codes))}")
    runs = publish([work / m / "sweep" for m in a.models], Path(a.out))
    ref = "factorized" if "factorized" in a.models else a.models[0]
    subprocess.run([sys.executable, "-m", "compresslab.cli", "rd", *[str(Path(r).relative_to(ROOT)) for r in runs],
                    "--reference", ref, "--anchor", "kodak/vtm", "--out", str(Path(a.out).relative_to(ROOT))],
                   cwd=ROOT, check=True)


if __name__ == "__main__":
    main()
