"""The staged runner: one generic driver for every multi-stage recipe in ``conf/pipeline/<name>.yaml`` (pretrain ->
per-λ stage -> Kodak evaluation with real bitstreams -> publish the runs' rd.json into the committed folder -> RD
table, plot and BD-rates). A recipe is config only: its models, queues, stages, λ ladders, budgets and references.

    compresslab pipeline rd_cpu_proxy                        # = python -m compresslab.drivers.pipeline rd_cpu_proxy
    compresslab pipeline rd_cpu_ctx --queues hyperprior,msp/fast_gdn --queues factorized
    compresslab pipeline rd_cpu_proxy --set debug=smoke --lambdas 0.013 0.0932 --work /tmp/w --out /tmp/o
    compresslab pipeline gpu_scale --dry-run                 # every command it would run, nothing run or written

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
import json
import os
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from compresslab.conf import CONF_DIR
from compresslab.errors import ConfigError

MODES = ("single", "sweep", "per_lambda")
TEMPLATE = re.compile(r"\{(?:steps:)?([A-Za-z_]\w*)(?::([0-9.]+))?\}")


@dataclass
class Stage:
    name: str
    overrides: list[str]
    mode: str = "single"
    lambdas: list[float] | None = None
    launcher: dict[str, Any] | None = None   # {name: submitit_local, <its keys>}; dropped when --set picks one


@dataclass
class Recipe:
    name: str
    work: Path
    out: Path
    queues: list[list[str]]
    models: dict[str, list[str]]
    stages: list[Stage]
    publish: dict[str, Any] = field(default_factory=dict)
    common: list[str] = field(default_factory=list)


def slug(model: str) -> str:
    return model.replace("/", "_")


def experiment_ladder(experiment: str) -> list[float]:
    """The λ ladder of conf/experiment/<experiment>.yaml (hydra.sweeper.params.lambda), following its defaults."""
    name = experiment
    while name:
        path = CONF_DIR / "experiment" / f"{name}.yaml"
        if not path.is_file():
            raise ConfigError(f"experiment {name!r} (conf/experiment/{name}.yaml) does not exist")
        doc = OmegaConf.load(path)
        value = OmegaConf.select(doc, "hydra.sweeper.params.lambda")
        if value is not None:
            return [float(v) for v in str(value).split(",")]
        name = next((d for d in doc.get("defaults", []) if isinstance(d, str) and d != "_self_"), None)
    raise ConfigError(f"experiment {experiment!r} has no hydra.sweeper.params.lambda ladder; give the stage lambdas")


def load_recipe(name: str) -> Recipe:
    path = Path(name) if name.endswith(".yaml") else CONF_DIR / "pipeline" / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in (CONF_DIR / "pipeline").glob("*.yaml"))
        raise ConfigError(f"no pipeline {name!r}: known {', '.join(known)} (conf/pipeline/<name>.yaml), or a .yaml path")
    doc = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    stages = []
    for s in doc.get("stages") or []:
        unknown = set(s) - {"name", "overrides", "mode", "lambdas", "launcher"}
        if unknown:
            raise ConfigError(f"pipeline {name}: stage {s.get('name')!r} has unknown keys {sorted(unknown)}")
        stage = Stage(**s)
        if stage.mode not in MODES:
            raise ConfigError(f"pipeline {name}: stage {stage.name} mode {stage.mode!r}; use one of {MODES}")
        if stage.lambdas == "experiment":
            exp = next((o.split("=", 1)[1] for o in stage.overrides if o.startswith("experiment=")), None)
            if exp is None:
                raise ConfigError(f"pipeline {name}: stage {stage.name} takes its lambdas from an experiment= it lacks")
            stage.lambdas = experiment_ladder(exp)
        if stage.mode != "single" and not stage.lambdas:
            raise ConfigError(f"pipeline {name}: stage {stage.name} ({stage.mode}) needs lambdas")
        stages.append(stage)
    if not stages:
        raise ConfigError(f"pipeline {name}: no stages")
    queues = [list(q) for q in doc.get("queues") or []]
    models = {m: list(doc.get("models", {}).get(m) or [f"model={m}"]) for q in queues for m in q}
    return Recipe(name=path.stem, work=Path(doc["work"]), out=Path(doc["out"]), queues=queues, models=models,
                  stages=stages, publish=dict(doc.get("publish") or {}), common=list(doc.get("common") or []))


# -- what a stage's runs are and where they live ------------------------------------------------------------------
def run_dir(recipe: Recipe, model: str, stage: Stage, lmbda: float | None = None) -> Path:
    base = recipe.work / slug(model) / stage.name
    return base / f"lambda{lmbda}" if stage.mode == "per_lambda" else base


def finished(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads((path / "done.json").read_text())
    except (OSError, ValueError):
        return None


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


# -- publishing --------------------------------------------------------------------------------------------------
def rel(path: Path) -> str:
    """Relative to the folder the command runs in where possible (committed files carry no machine paths)."""
    path = Path(os.path.abspath(path))
    cwd = Path.cwd()
    return str(path.relative_to(cwd)) if path.is_relative_to(cwd) else str(path)


def published_runs(recipe: Recipe, models: list[str]) -> list[Path]:
    """Each finished run of the publish stage into <out>/runs/<model>-lambda<λ>/rd.json (through the results
    schema; run_dir relative), so the committed folder is written by the runner, never copied by hand."""
    from compresslab.evaluation.results import RDResult

    stage = next(s for s in recipe.stages if s.name == recipe.publish.get("stage", recipe.stages[-1].name))
    found = []
    for model in models:
        where = run_dir(recipe, model, stage)
        files = sorted(where.glob("*/rd.json")) if stage.mode != "single" else [where / "rd.json"]
        for f in files:
            if not f.is_file():
                continue
            rd = publishable(RDResult.read(f), f.parent)
            target = recipe.out / "runs" / f"{rd.meta.model.get('name')}-lambda{rd.meta.lmbda}" / "rd.json"
            rd.write(target)
            copy_provenance(f.parent, target.parent)
            found.append(target.parent)
    return found


def published_stage_provenance(recipe: Recipe, models: list[str]) -> list[Path]:
    """The earlier stages' runs (a warm start) are no points of the curve, but their steps, wall time and code are
    part of how every point was made: their provenance files go to <out>/runs/<model>-<stage>[-<run>]/ (no rd.json,
    so no curve reads them)."""
    publish_stage = recipe.publish.get("stage", recipe.stages[-1].name)
    written = []
    for model in models:
        for stage in recipe.stages:
            if stage.name == publish_stage:
                continue
            where = run_dir(recipe, model, stage)
            if stage.mode == "single":
                runs = [(where, f"{slug(model)}-{stage.name}")]
            elif stage.mode == "per_lambda":
                runs = [(run_dir(recipe, model, stage, v), f"{slug(model)}-{stage.name}-lambda{v}") for v in stage.lambdas]
            else:
                runs = [(d, f"{slug(model)}-{stage.name}-{d.name}") for d in sorted(where.glob("*")) if d.is_dir()]
            for src, name in runs:
                if finished(src) is None:
                    continue
                target = recipe.out / "runs" / name
                target.mkdir(parents=True, exist_ok=True)
                copy_provenance(src, target)
                written.append(target)
    return written


PROVENANCE_FILES = ("config.yaml", "git.json", "git.diff", "done.json")  # done.json: steps, wall time


def portable(text: str) -> str:
    """Machine paths made relative to the checkout (or ``${COMPRESSLAB_DATA}``): committed files name no machine's
    folders."""
    roots = [(str(Path.cwd()) + "/", ""), (f'"{Path.cwd()}"', '"."')]  # a path inside, the checkout itself
    data = os.environ.get("COMPRESSLAB_DATA")
    if data:
        roots.insert(0, (str(Path(data).resolve()), "${COMPRESSLAB_DATA}"))
    for root, repl in roots:
        text = text.replace(root, repl)
    return text


def publishable(rd, run: Path):
    """A run's RDResult as a committed folder keeps it: run_dir and image folder without machine paths."""
    rd.meta.run_dir = rel(run)
    if rd.meta.image_source:
        rd.meta.image_source = portable(str(rd.meta.image_source))
    return rd


def copy_provenance(run: Path, target: Path) -> None:
    """The run's resolved config and git state beside its published rd.json (small text), so a committed result
    folder says what produced each point (paths made portable, as in rd.json)."""
    for name in PROVENANCE_FILES:
        src = run / name
        if src.is_file():
            (target / name).write_text(portable(src.read_text(errors="replace")))


def write_run_index(runs_dir: Path) -> Path:
    """<runs_dir>/index.json: one row per published run folder (curve, λ, steps, wall time, start, commit, dirty),
    from its rd.json, done.json and git.json: the source a README's steps and wall times render from."""
    def read(path: Path) -> dict:
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return {}

    rows = []
    for d in sorted(p for p in runs_dir.glob("*") if p.is_dir()):
        rd, done, git = read(d / "rd.json"), read(d / "done.json"), read(d / "git.json")
        meta = rd.get("meta") or {}
        rows.append({"run": d.name, "curve": rd.get("name"), "lambda": meta.get("lambda", done.get("lambda")),
                     "global_step": done.get("global_step", meta.get("step")), "wall_s": done.get("wall_s"),
                     "started_utc": done.get("started_utc"), "commit": git.get("commit", meta.get("commit")),
                     "dirty": git.get("dirty", meta.get("dirty"))})
    out = runs_dir / "index.json"
    out.write_text(json.dumps({"runs": rows}, indent=2))
    return out


def publish(recipe: Recipe, models: list[str], dry: bool = False) -> list[str]:
    runs = [] if dry else published_runs(recipe, models)
    if not dry:
        published_stage_provenance(recipe, models)
        write_run_index(recipe.out / "runs")
    if not dry and not runs:
        raise ConfigError(f"nothing to publish: no finished run of stage {recipe.publish.get('stage')} under "
                          f"{recipe.work} (run the stages first, or point --work at their folders)")
    # the table holds every published curve of the folder, not only this call's queues: a rerun limited to one
    # model must not drop the others' rows from the committed table
    every = sorted({*runs, *(p.parent for p in (recipe.out / "runs").glob("*/rd.json"))}) if not dry else []
    labels = set()
    if not dry:
        from compresslab.evaluation.curves import load_points

        labels = set(load_points([str(r) for r in every]))
    # a reference is an anchor (dataset/name) or one of the published curves (a run limited to some queues has
    # fewer curves than the recipe names)
    refs = [r for r in recipe.publish.get("references", []) if "/" in r or dry or r in labels]
    argv = [sys.executable, "-m", "compresslab.cli", "rd", *([rel(r) for r in every] or [rel(recipe.out / "runs")]),
            *(["--reference", *refs] if refs else []), "--anchor", recipe.publish.get("anchor", "kodak/vtm"),
            "--out", rel(recipe.out)]
    if not dry:
        subprocess.run(argv, check=True)
        pair = recipe.publish.get("per_lambda")
        if pair:
            per_lambda_table(recipe, pair["test"], pair["reference"])
    return argv


def per_lambda_table(recipe: Recipe, test: str, ref: str) -> None:
    """At each λ both models' Kodak bpp/PSNR, their change and the RD-cost change (the training objective), from the
    published rd.json files, as per_lambda.json (the source) and per_lambda.md."""
    from compresslab.evaluation.metrics import mean_rd_cost
    from compresslab.evaluation.results import RDResult

    def by_lambda(name: str) -> dict[float, RDResult]:  # a registered model name (rd.json meta.model.name)
        out = {}
        for f in (recipe.out / "runs").glob("*/rd.json"):
            rd = RDResult.read(f)
            if rd.meta.model.get("name") == name:
                out[float(rd.meta.lmbda)] = rd
        return out

    t, r = by_lambda(test), by_lambda(ref)
    rows = []
    for lmbda in sorted(set(t) & set(r)):
        a, b = t[lmbda], r[lmbda]
        rows.append({"lambda": lmbda, "images": len(a.per_image),
                     f"{ref}_bpp": b.mean["bpp"], f"{ref}_psnr": b.mean["psnr-rgb"],
                     f"{test}_bpp": a.mean["bpp"], f"{test}_psnr": a.mean["psnr-rgb"],
                     "bpp_change_pct": 100 * (a.mean["bpp"] / b.mean["bpp"] - 1),
                     "psnr_change_db": a.mean["psnr-rgb"] - b.mean["psnr-rgb"],
                     "rd_cost_change_pct": 100 * (mean_rd_cost(a.per_image, lmbda) / mean_rd_cost(b.per_image, lmbda) - 1)})
    if not rows:
        print("per-lambda table: no lambda finished for both models")
        return
    mean = sum(x["rd_cost_change_pct"] for x in rows) / len(rows)
    (recipe.out / "per_lambda.json").write_text(json.dumps({"rows": rows, "mean_rd_cost_change_pct": mean}, indent=2))
    lines = [f"# {test} vs {ref} per lambda (Kodak, real bitstreams; RD cost = mean over images of "
             "bpp + lambda*255^2*MSE, the training objective). Generated by the pipeline from per_lambda.json.", "",
             f"| lambda | {ref} bpp | {ref} PSNR | {test} bpp | {test} PSNR | bpp change | PSNR change | RD-cost change |",
             "|---|---|---|---|---|---|---|---|"]
    for x in rows:
        lines.append(f"| {x['lambda']} | {x[f'{ref}_bpp']:.4f} | {x[f'{ref}_psnr']:.2f} | {x[f'{test}_bpp']:.4f} "
                     f"| {x[f'{test}_psnr']:.2f} | {x['bpp_change_pct']:+.1f} % | {x['psnr_change_db']:+.2f} dB "
                     f"| {x['rd_cost_change_pct']:+.2f} % |")
    lines += ["", f"Mean RD-cost change over {len(rows)} lambdas: {mean:+.2f} %"]
    (recipe.out / "per_lambda.md").write_text("\n".join(lines) + "\n")


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
    ap.add_argument("--work", default=None, help="run folders (default: the recipe's)")
    ap.add_argument("--out", default=None, help="the committed results folder (default: the recipe's)")
    ap.add_argument("--publish-only", action="store_true", help="no training: publish and summarise finished runs")
    ap.add_argument("--dry-run", action="store_true", help="print every command; run and write nothing")
    return ap


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    recipe = load_recipe(a.recipe)
    if a.work:
        recipe.work = Path(a.work)
    if a.out:
        recipe.out = Path(a.out)
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
        print(f"then: {shlex.join(publish(recipe, models, dry=True))}\n(dry run: nothing ran, nothing was written)")
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
    publish(recipe, models)
    print(f"results: {recipe.out}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except ConfigError as e:
        sys.exit(f"config error: {e}")
