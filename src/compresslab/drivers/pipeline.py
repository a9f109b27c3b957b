"""The staged runner: one generic driver for every multi-stage recipe in ``conf/pipeline/<name>.yaml`` (pretrain ->
per-λ stage -> Kodak evaluation with real bitstreams -> the runs' rd.json gathered into a results folder -> RD
table, plot and BD-rates). A recipe is config only: its models, queues, stages, λ ladders, budgets and references.

    compresslab pipeline rd_cpu_proxy                        # results in a new outputs/pipeline/rd_cpu_proxy/<id>/
    compresslab pipeline rd_cpu_proxy --publish              # ... into the recipe's committed folder (its `out`)
    compresslab pipeline rd_cpu_ctx --queues hyperprior,msp/fast_gdn --queues factorized
    compresslab pipeline rd_cpu_proxy --set debug=smoke --lambdas 0.013 0.0932 --work /tmp/w --out /tmp/o
    compresslab pipeline gpu_scale --dry-run                 # every command it would run, nothing run or written

The results folder is new for every command unless ``--out`` names one; the recipe's committed folder (its ``out``,
under experiments/) is written only with ``--publish``, where a run limited to some queues adds its curves to the
folder's others.

A stage is one of three modes:

- ``single``: one run per model in ``<work>/<model>/<stage>``;
- ``sweep``: one Hydra multirun over the stage's λ per model (``hydra.sweep.dir=<work>/<model>/<stage>``; a λ whose
  rd.json exists is not rerun);
- ``per_lambda``: one run per (model, λ) in ``<work>/<model>/<stage>/lambda<λ>``, all of a queue's started at once
  (several processes sharing one GPU).

Overrides may name other stages' runs: ``{pretrain}`` is that stage's run folder for this model (and this λ, when it
ran per λ), ``{steps:stage1}`` its final step and ``{steps:stage1:0.828}`` that step times a factor (a budget that
follows what the same wall time reached). λ ladders: a list, or ``experiment`` for the experiment file's own
``hydra.sweeper.params.lambda``. Queues run in parallel (one process each, one thread per run unless a recipe says
otherwise); a queue runs its models one after another. A finished run (``done.json``) is never rerun; a killed one
continues from its ``checkpoints/last.ckpt``; ``--publish-only`` skips training.
"""

from __future__ import annotations

import argparse
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

from compresslab.drivers.pipeline_publish import publish, rel
from compresslab.drivers.pipeline_recipe import TEMPLATE, Recipe, Stage, finished, load_recipe, run_dir, slug
from compresslab.errors import ConfigError
from compresslab.io.outdirs import add_output_args, new_dir, output_dir
from compresslab.reporting.beside import PUBLISHED_JS, REPORT, write_beside

__all__ = ["build_parser", "load_recipe", "main", "publish", "stage_commands"]

def swept_lambdas(sweep_dir: Path) -> set[float]:
    from compresslab.evaluation.results import RDResult, ResultFileError

    out = set()
    for rd in sweep_dir.glob("*/rd.json"):
        try:
            lmbda = RDResult.read(rd).meta.lmbda
        except ResultFileError:
            continue
        if lmbda is not None and finished(rd.parent) is not None:
            out.add(float(lmbda))
    return out


def fill(text: str, recipe: Recipe, model: str, lmbda: float | None, dry: bool) -> str:
    """{stage} -> that stage's run folder for this model (and λ); {steps:stage[:factor]} -> its final step."""
    def sub(m: re.Match) -> str:
        stage = next((s for s in recipe.stages if s.name == m.group(1)), None)
        if stage is None:
            raise ConfigError(f"pipeline {recipe.name}: {m.group(0)} names no stage ({[s.name for s in recipe.stages]})")
        where = run_dir(recipe, model, stage, lmbda if stage.mode == "per_lambda" else None)
        if not m.group(0).startswith("{steps:"):
            return str(where)
        done = finished(where)
        if done is None:
            if dry:
                return f"<steps of {where}>"
            raise ConfigError(f"{m.group(0)}: {where} has not finished (no done.json); run stage {stage.name} first")
        return str(int(int(done["global_step"]) * float(m.group(2) or 1)))

    return TEMPLATE.sub(sub, text)


def stage_commands(recipe: Recipe, model: str, stage: Stage, extra: list[str], lambdas: list[float] | None,
                   dry: bool = False) -> list[tuple[str, list[str], Path | None]]:
    """(what, argv, run folder or None) of every process this stage starts for ``model``; finished work is left out."""
    py = [sys.executable, "-m", "compresslab", "train"]
    base = recipe.common + recipe.models[model] + extra
    ladder = lambdas or stage.lambdas
    if stage.mode == "single":
        where = run_dir(recipe, model, stage)
        if finished(where):
            return []
        resume = [f"ckpt_path={where / 'checkpoints' / 'last.ckpt'}"] if (where / "checkpoints" / "last.ckpt").is_file() else []
        over = [fill(o, recipe, model, None, dry) for o in stage.overrides]
        return [(f"{model} {stage.name}", py + over + base + resume + [f"hydra.run.dir={where}"], where)]
    if stage.mode == "sweep":
        where = run_dir(recipe, model, stage)
        todo = [v for v in ladder if v not in swept_lambdas(where)]
        if not todo:
            return []
        over = [fill(o, recipe, model, None, dry) for o in stage.overrides]
        launcher = []
        if stage.launcher and not any(e.startswith("hydra/launcher=") for e in extra):
            spec = dict(stage.launcher)
            launcher = [f"hydra/launcher={spec.pop('name')}", *(f"hydra.launcher.{k}={v}" for k, v in spec.items())]
        return [(f"{model} {stage.name} lambda={','.join(map(str, todo))}",
                 py[:-1] + ["train", "-m"] + over + base + launcher
                 + ["lambda=" + ",".join(map(str, todo)), f"hydra.sweep.dir={where}"], None)]
    out = []
    for v in ladder:
        where = run_dir(recipe, model, stage, v)
        if finished(where):
            continue
        resume = [f"ckpt_path={where / 'checkpoints' / 'last.ckpt'}"] if (where / "checkpoints" / "last.ckpt").is_file() else []
        over = [fill(o, recipe, model, v, dry) for o in stage.overrides]
        out.append((f"{model} {stage.name} lambda={v}", py + over + base + [f"lambda={v}"] + resume
                    + [f"hydra.run.dir={where}"], where))
    return out


def run_queue(recipe: Recipe, queue: list[str], stages: list[Stage], extra: list[str], lambdas, log) -> int:
    """A queue's models one after another, each through every stage; per-λ runs of a stage start together."""
    for model in queue:
        for stage in stages:
            cmds = stage_commands(recipe, model, stage, extra, lambdas)
            if not cmds:
                print(f"== {time.strftime('%H:%M:%S')} {model} {stage.name}: finished, skipped", file=log, flush=True)
                continue
            procs = []
            for what, argv, _ in cmds:
                print(f"== {time.strftime('%H:%M:%S')} {what}: {shlex.join(argv)}", file=log, flush=True)
                procs.append((what, subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)))
            failed = [what for what, p in procs if p.wait() != 0]
            if failed:
                print(f"== {time.strftime('%H:%M:%S')} failed: {failed}", file=log, flush=True)
                return 1
    return 0


# -- the command -------------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="compresslab pipeline", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("recipe", help="conf/pipeline/<name>.yaml (or a .yaml path)")
    ap.add_argument("--queues", action="append", default=None, metavar="M1,M2",
                    help="models of one queue, comma-separated; repeat for parallel queues (default: the recipe's)")
    ap.add_argument("--stages", nargs="+", default=None, help="run only these stages (default: all)")
    ap.add_argument("--lambdas", nargs="+", type=float, default=None, help="replace every per-λ stage's ladder")
    ap.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", help="Hydra overrides for every run")
    ap.add_argument("--work", default=None, help="run folders (default: the recipe's; finished runs are reused)")
    add_output_args(ap, "the recipe's out", what="published runs, table and plot")
    ap.add_argument("--publish-only", action="store_true", help="no training: gather and summarise finished runs")
    ap.add_argument("--dry-run", action="store_true", help="print every command; run and write nothing")
    return ap


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    recipe = load_recipe(a.recipe)
    if a.work:
        recipe.work = Path(a.work)
    fresh = not (a.publish or a.out)  # a new folder, made only when there is something to publish into it
    recipe.out = output_dir(a.out, a.publish, recipe.out, "pipeline", recipe.name, dry=fresh)
    if a.queues:
        recipe.queues = [q.split(",") for q in a.queues]
        recipe.models = {m: recipe.models.get(m) or [f"model={m}"] for q in recipe.queues for m in q}
    stages = [s for s in recipe.stages if not a.stages or s.name in a.stages]
    models = [m for q in recipe.queues for m in q]
    if a.dry_run:
        for q in recipe.queues:
            for model in q:
                for stage in stages:
                    cmds = stage_commands(recipe, model, stage, a.set, a.lambdas, dry=True)
                    for what, cmd, _ in cmds or [(f"{model} {stage.name}: finished, would skip", [], None)]:
                        print(f"{what}: {shlex.join(cmd)}" if cmd else what)
        runs = recipe.out / "runs"
        page = ["compresslab", "report", str(runs), "-o", str(recipe.out / REPORT), "--force", "--anchor",
                recipe.publish.get("anchor", "kodak/vtm"), *(["--shared-js", str(PUBLISHED_JS)] if a.publish else [])]
        print(f"then: {shlex.join(publish(recipe, models, dry=True))}\nthen: {shlex.join(page)}\n"
              "(dry run: nothing ran, nothing was written)")
        return 0
    if not a.publish_only:
        from concurrent.futures import ThreadPoolExecutor

        recipe.work.mkdir(parents=True, exist_ok=True)

        def queue(q: list[str]) -> int:  # a thread per queue: the work is in its subprocesses
            logfile = recipe.work / f"{'+'.join(slug(m) for m in q)}.log"
            print(f"{' then '.join(q)}: log {logfile}", flush=True)
            with open(logfile, "a") as log:
                return run_queue(recipe, q, stages, a.set, a.lambdas, log)

        with ThreadPoolExecutor(max_workers=len(recipe.queues) or 1) as pool:
            codes = dict(zip(("+".join(q) for q in recipe.queues), pool.map(queue, recipe.queues)))
        if any(codes.values()):
            print(f"failed queues: {[k for k, v in codes.items() if v]} (their logs under {recipe.work})", file=sys.stderr)
            return 1
    target = recipe.publish.get("stage", recipe.stages[-1].name)
    if not a.publish_only and target not in {s.name for s in stages}:
        print(f"stage {target} (the one published) was not run: nothing published", flush=True)
        return 0
    if fresh:
        recipe.out = new_dir("pipeline", recipe.name)
    try:
        publish(recipe, models)
    except ConfigError:
        if fresh and not any(recipe.out.iterdir()):  # nothing published: no empty folder left behind
            recipe.out.rmdir()
        raise
    # the page beside rd_table.md, as `compresslab report <out>/runs -o <out>/report.html` writes it (a published
    # folder's loads the one committed plotly.js: `... --shared-js experiments/report_assets`)
    write_beside([rel(recipe.out / "runs")], recipe.out / REPORT, anchor=recipe.publish.get("anchor", "kodak/vtm"),
                 shared_js=PUBLISHED_JS if a.publish else None)
    print(f"results: {recipe.out}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except ConfigError as e:
        sys.exit(f"config error: {e}")
