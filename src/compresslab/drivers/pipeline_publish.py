"""Publishing a pipeline's runs: each finished run of the publish stage into ``<out>/runs/<model>-lambda<λ>/`` (its
rd.json through the results schema, with its provenance files, machine paths made relative), the earlier stages'
provenance beside them, ``runs/index.json``, then the RD table, plot and BD-rates (``compresslab rd``) and the
per-λ comparison. ``<out>`` is the folder the command chose (compresslab.io.outdirs): a new one unless
``--publish`` or ``--out`` says otherwise."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from compresslab.drivers.pipeline_recipe import Recipe, finished, run_dir, slug
from compresslab.errors import ConfigError

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
    if not dry and not runs:
        raise ConfigError(f"nothing to publish: no finished run of stage {recipe.publish.get('stage')} under "
                          f"{recipe.work} (run the stages first, or point --work at their folders)")
    if not dry:
        published_stage_provenance(recipe, models)
        write_run_index(recipe.out / "runs")
    # the table holds every published curve of the folder, not only this call's queues: a rerun limited to one
    # model must not drop the others' rows from the committed table
    every = sorted({*runs, *(p.parent for p in (recipe.out / "runs").glob("*/rd.json"))}) if not dry else []
    labels = set()
    if not dry:
        from compresslab.rd.curves import load_points

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
