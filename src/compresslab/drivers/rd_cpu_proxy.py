"""CPU RD sweep: pretrain each model at a middle lambda, fine-tune to each lambda, evaluate on Kodak with real
bitstreams, then publish the runs' rd.json and write the RD table, plot and BD-rates (vs VTM and pairwise).

    python -m compresslab.drivers.rd_cpu_proxy [--models factorized] [--models hyperprior] [--lambdas ...]
    python -m compresslab.drivers.rd_cpu_proxy --recipe rd_cpu_ctx --models hyperprior factorized --models msp/fast_gdn

The recipe (stage sizes, schedule, the lambda ladder) lives in conf/experiment/<recipe>{,_finetune}.yaml; a model is
a conf/model entry (msp/fast_gdn included); --lambdas only overrides the ladder. Progress: each queue's log names its
model and stage with the time, and the runs print step/total, s/step and ETA; `tail -f <work>/<queue>.log`.

Each --models flag is one queue, run in its own process (one thread), its models one after the other; two queues
use both cores.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

from compresslab.conf import CONF_DIR

ROOT = Path.cwd()  # work and results folders are relative to where the command runs (a clone or any folder)


def slug(model: str) -> str:
    return model.replace("/", "_")


def yaml_ladder(recipe: str) -> list[float]:
    """The lambda ladder of <recipe>_finetune.yaml (hydra.sweeper.params.lambda), following its defaults chain."""
    from omegaconf import OmegaConf

    name = f"{recipe}_finetune"
    while name:
        doc = OmegaConf.load(CONF_DIR / "experiment" / f"{name}.yaml")
        value = OmegaConf.select(doc, "hydra.sweeper.params.lambda")
        if value is not None:
            return [float(v) for v in str(value).split(",")]
        name = next((d for d in doc.get("defaults", []) if isinstance(d, str) and d != "_self_"), None)
    return []


def finished_lambdas(sweep: Path) -> set[float]:
    return {float(json.loads(rd.read_text())["meta"]["lambda"]) for rd in sweep.glob("*/rd.json")}


def pipeline(model: str, lambdas: list[float], work: Path, recipe: str, extra: list[str] = ()) -> str:
    pre = work / slug(model) / "pretrain"
    ckpt = pre / "checkpoints" / "last.ckpt"
    py = sys.executable
    sweep = work / slug(model) / "sweep"
    # a killed queue resumes: a finished stage 1 is not rerun (its last.ckpt is the warm start) and stage 2 runs only
    # the lambdas without a rd.json (a finished run is never touched: its folder keeps its rd.json)
    todo = [v for v in (lambdas or yaml_ladder(recipe)) if v not in finished_lambdas(sweep)]
    stage1 = [py, "-m", "compresslab", "train", f"experiment={recipe}", f"model={model}", *extra, f"hydra.run.dir={pre}"]
    stage2 = [py, "-m", "compresslab", "train", "-m", f"experiment={recipe}_finetune", f"model={model}", f"init_from={ckpt}", *extra,
              "lambda=" + ",".join(map(str, todo)), f"hydra.sweep.dir={sweep}"]
    run2 = (f"echo \"== $(date -u +%H:%M:%S) {model}: stage 2 (per-lambda: {','.join(map(str, todo))}) -> {sweep}\" "
            f"&& {shlex.join(stage2)}") if todo else \
        f"echo \"== $(date -u +%H:%M:%S) {model}: stage 2 done (every lambda has its rd.json in {sweep})\""
    return (f"echo \"== $(date -u +%H:%M:%S) {model}: stage 1 (warm start) -> {pre}\"; "
            f"[ -f {ckpt} ] || {shlex.join(stage1)} && {run2}")


def rel(path: Path) -> str:
    """Repository-relative where possible (committed files carry no machine paths), absolute otherwise."""
    path = Path(os.path.abspath(path))  # not resolve(): a work folder linked into outputs/ stays repository-relative
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def publish(sweeps: list[Path], dest: Path) -> list[str]:
    """Each run's rd.json into <dest>/runs/<model>-lambda<l>/ (paths relative to the repository), so the committed
    folder is written by the driver, not copied by hand."""
    out = []
    for sw in sweeps:
        for rd in sorted(sw.glob("*/rd.json")):
            doc = json.loads(rd.read_text())
            meta = doc["meta"]
            meta["run_dir"] = rel(rd.parent)
            target = dest / "runs" / f"{meta['model']['name']}-lambda{meta['lambda']}"
            target.mkdir(parents=True, exist_ok=True)
            (target / "rd.json").write_text(json.dumps(doc, indent=2))
            out.append(str(target))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="+", action="append", default=None,
                    help="a queue of models run one after the other; repeat the flag for a parallel queue "
                         "(default: factorized and hyperprior in parallel)")
    ap.add_argument("--recipe", default="rd_cpu_proxy", help="conf/experiment/<recipe>.yaml and <recipe>_finetune.yaml")
    ap.add_argument("--lambdas", nargs="+", type=float, default=None, help="default: the ladder in the YAML")
    ap.add_argument("--work", default=str(ROOT / "outputs" / "rd_cpu_proxy"))
    ap.add_argument("--out", default=str(ROOT / "experiments" / "rd_cpu_proxy"), help="committed results folder")
    ap.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                    help="Hydra overrides for both stages (e.g. debug=smoke for a pipeline check)")
    ap.add_argument("--publish-only", action="store_true", help="skip training; publish and summarise finished runs")
    a = ap.parse_args()
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    queues = a.models or [["factorized"], ["hyperprior"]]
    models = [m for q in queues for m in q]
    procs = []
    for q in ([] if a.publish_only else queues):
        name = "+".join(slug(m) for m in q)
        log = open(work / f"{name}.log", "w")
        script = " && ".join(f"( {pipeline(m, a.lambdas, work, a.recipe, a.set)} )" for m in q)
        procs.append(subprocess.Popen(["bash", "-c", script], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT))
        print(f"{' then '.join(q)}: log {work / f'{name}.log'}")
    codes = [p.wait() for p in procs]
    if any(codes):
        sys.exit(f"failed: {dict(zip(['+'.join(q) for q in queues], codes))}")
    runs = publish([work / slug(m) / "sweep" for m in models], Path(a.out))
    # pairwise columns: every model vs the factorized baseline, and MSP vs the hyperprior (same transforms)
    refs = [r for r in ("factorized", "hyperprior") if r in models]  # curve labels; a lone MSP queue has none
    subprocess.run([sys.executable, "-m", "compresslab.cli", "rd", *[rel(Path(r)) for r in runs],
                    *(["--reference", *refs] if refs else []), "--anchor", "kodak/vtm", "--out", rel(Path(a.out))],
                   cwd=ROOT, check=True)


if __name__ == "__main__":
    main()
