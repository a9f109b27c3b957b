"""`compresslab reproduce PAPER`: run (or reuse) a paper's recipe and write a report that puts the paper's published
numbers beside ours, with the scale we ran at. Papers, profiles, steps and published values live in
conf/reproduce/<paper>.yaml; the steps are the experiment drivers, so this module only orchestrates and reports.

Where it writes: a new folder ``outputs/reproduce/<paper>_<profile>/<id>/`` (the report, and the steps' results under
the repository's own paths, ``{out}`` in a step), never a folder that holds results. Published results (the profile's
``results`` folder, committed) are read when present and the steps are skipped; they are rewritten only with
``--publish``, which runs the steps into the repository and the report into ``experiments/reproduce/<paper>_<profile>``,
keeps the producing run's step times (``steps.json``) and refuses to replace measured times with "skipped"."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from compresslab.evaluation.render import read_md_table
from compresslab.conf import CONF_DIR
from compresslab.io.outdirs import guard, new_dir

CONF = CONF_DIR / "reproduce"
ROOT = Path(".")  # results, work folders and reports are relative to where the command runs (a clone, or any folder)


class ReproduceError(ValueError):
    pass


def papers() -> dict[str, dict[str, Any]]:
    return {p.stem: OmegaConf.to_container(OmegaConf.load(p), resolve=True) for p in sorted(CONF.glob("*.yaml"))}


def _find(path: str, tree: Path | None) -> Path:
    """A result file: the one this reproduction's steps wrote (under ``tree``) where there is one, else the
    published one (read only)."""
    return tree / path if tree is not None and (tree / path).exists() else ROOT / path


def _ours(spec: dict[str, Any], results: Path, tables: dict[str, str], tree: Path | None = None) -> str | None:
    """Our value for one published quantity: a cell of the results' rd_table.md (by curve) or of an extra table."""
    if "table" in spec:
        path, key, row = _find(tables[spec["table"]], tree), spec["key"], spec["row"]
    else:
        path, key, row = results / "rd_table.md", "curve", spec["curve"]
    if not path.exists():
        return None
    for r in read_md_table(path):
        if r.get(key) == row:
            return r.get(spec["column"]) or None
    return None


def _number(cell: str | None) -> float | None:
    try:
        return float(str(cell).replace("%", "").replace("+", "").strip())
    except (TypeError, ValueError):
        return None


def _command(cmd: list[str]) -> str:
    import shlex

    return " ".join(shlex.quote(c) for c in cmd)


def _duration(seconds: float) -> str:
    m, s = divmod(round(seconds), 60)
    return f"{m // 60} h {m % 60} min" if m >= 60 else f"{m} min {s} s" if m else f"{s} s"


def step_argv(step: list, tree: Path | None, step_args: list[str] | None) -> list[str]:
    """A step's arguments with ``{out}`` filled: this reproduction's folder (``tree``), or, publishing (tree None),
    the repository itself, with ``--publish`` passed to the step so that it may write there."""
    args = [str(a) for a in step]
    writes = any("{out}" in a for a in args)
    if tree is None:
        args = [a.replace("{out}/", "").replace("{out}", ".") for a in args] + (["--publish"] if writes else [])
    else:
        args = [a.replace("{out}", str(tree)) for a in args]
    return [*args, *(step_args or [])]


def results_present(paper: str, profile: str) -> bool:
    cfg = papers()[paper]["profiles"][profile]
    return (ROOT / cfg["results"] / cfg.get("table", "rd_table.md")).exists()


def run_steps(paper: str, profile: str, rerun: bool = False, dry_run: bool = False,
              step_args: list[str] | None = None, tree: Path | None = None) -> list[str]:
    """Run the profile's steps (``python <step…> <step_args…>``: step_args, e.g. a smoke-scale budget, go to every
    step) writing under ``tree`` (None: publishing into the repository); a dry run names each step with its full
    command, runs nothing and writes nothing."""
    cfg = papers()[paper]["profiles"][profile]
    done = results_present(paper, profile) and not rerun
    log = []
    for i, step in enumerate(cfg["steps"], 1):
        step = step_argv(step, tree, step_args)
        cmd = [sys.executable, *step]
        if dry_run:
            log.append(f"step {i}: would skip (results present in {cfg['results']}; --rerun runs it): {_command(cmd)}"
                       if done else f"step {i}: would run: {_command(cmd)}")
            continue
        if done:
            log.append(f"skipped (results present in {cfg['results']}): {' '.join(map(str, step))}")
            continue
        print("$", " ".join(map(str, step)), flush=True)
        t0 = time.monotonic()
        if subprocess.run(cmd, cwd=ROOT).returncode != 0:
            # each driver skips the stages it already finished, so rerunning the same command resumes
            raise ReproduceError(f"step failed: {' '.join(map(str, step))}; its log is above; rerun "
                                 f"`compresslab reproduce {paper} --profile {profile}` to resume (finished stages "
                                 f"are kept in the steps' work folders)")
        log.append(f"ran ({_duration(time.monotonic() - t0)}): {' '.join(map(str, step))}")
    return log


def _missing_results(paper: str, profile: str, report_only: bool, steps_ran: bool) -> str:
    """Why the results table is missing, in terms of what the user actually ran."""
    cfg = papers()[paper]["profiles"][profile]
    table = f"{cfg['results']}/{cfg.get('table', 'rd_table.md')}"
    if report_only:
        return (f"{table} is missing: the profile's steps have not run here, and --report-only only writes the report "
                f"from their results; run `compresslab reproduce {paper} --profile {profile}` to run them first")
    if steps_ran:
        return (f"the steps finished but {table} was not written: the last step's output above says why (the "
                f"profile's results folder is {cfg['results']}; a --step-args that changes its --out moves them)")
    return f"{table} is missing; run `compresslab reproduce {paper} --profile {profile} --rerun`"


def commit_state(git: dict) -> str:
    """The commit a report was written at, and whether the code differed from it. The steps write their results into
    experiments/ before the report: those changes are the results, not a change to the code that produced them."""
    changed = [line[3:].strip('"') for line in (git.get("status") or "").splitlines() if line[3:]]
    code = [p for p in changed if not p.startswith("experiments/")]
    more = " …" if len(code) > 3 else ""
    return (git.get("commit") or "unknown")[:10] + (
        f" (dirty tree: uncommitted changes to {', '.join(code[:3])}{more})" if code
        else " (its results in experiments/ not yet committed)" if changed else "")


def _shown(path: Path) -> str:
    p = Path(os.path.abspath(path))
    return str(p.relative_to(Path.cwd())) if p.is_relative_to(Path.cwd()) else str(path)


def write_report(paper: str, profile: str, out: Path, log: list[str] | None = None, log_wandb: bool = False,
                 report_only: bool = True, wall_s: float | None = None, tree: Path | None = None,
                 prior: Path | None = None, publish: bool = False) -> Path:
    """The report in ``out``. Results come from ``tree`` where this reproduction's steps wrote them (wall_s set),
    else from the published folders; ``prior`` is the steps.json of the run that produced reused results."""
    from compresslab.provenance import cpu_model, git_state  # imported only when a report is written

    git = git_state()  # before this function copies figures into the folder: the state the report is built from
    doc = papers()[paper]
    cfg = doc["profiles"][profile]
    tree = tree if wall_s is not None else None   # steps skipped: every result is the published one
    results = (tree or ROOT) / cfg["results"]
    table = cfg.get("table", "rd_table.md")   # the file whose presence means the profile's steps are done
    if not (results / table).exists():
        raise ReproduceError(_missing_results(paper, profile, report_only,
                                              steps_ran=any(e.startswith("ran") for e in log or [])))
    out.mkdir(parents=True, exist_ok=True)
    lines = [f"# Reproduction: {doc['title']}", "",
             f"Profile **{profile}**: {cfg['scale']}.", "",
             f"Our numbers are read from `{_shown(results / table)}` and the tables named below (real bitstreams, BD-rate with `bjontegaard`, "
             f"Akima); the paper's from the source named in each row. A paper's number is never printed as ours.", "",
             "| quantity | paper | ours | ours − paper | paper's source |", "|---|---|---|---|---|"]
    tables = {**doc.get("extra_tables", {}), **cfg.get("extra_tables", {})}  # a profile may point at its own
    compared = []  # (quantity, paper, ours, source): the report's table, also logged to W&B
    for row in doc["published"]:
        ours = _ours(row["ours"], results, tables, tree)
        compared.append((row["quantity"], row.get("value"), ours, row["source"]))
        p, o = row.get("value"), _number(ours)
        diff = f"{o - p:+.2f}" if p is not None and o is not None else ""
        lines.append(f"| {row['quantity']} | {'' if p is None else p} | {ours or 'not available'} | {diff} | "
                     f"{row['source']} |")
    for name in ("rd.png", "rd.pdf"):
        if (results / name).exists():
            shutil.copy(results / name, out / name)
    if (out / "rd.png").exists():
        lines += ["", "![RD curves against the anchors](rd.png) ([PDF](rd.pdf))" if (out / "rd.pdf").exists()
                  else "![RD curves against the anchors](rd.png)"]
    figures = []
    for fig in cfg.get("figures", []) + doc.get("figures", []):  # the paper's other figures, redrawn with our data
        src = _find(fig["path"], tree)
        if not src.exists():
            lines += ["", f"- {fig['caption']}: not available yet (`{fig['path']}` missing; {fig.get('how', '')})"]
            continue
        for ext in (".png", ".pdf"):
            if src.with_suffix(ext).exists():
                shutil.copy(src.with_suffix(ext), out / src.with_suffix(ext).name)
        figures.append((fig["caption"], out / src.with_suffix(".png").name))
        lines += ["", f"![{fig['caption']}]({src.with_suffix('.png').name}) {fig['caption']} (source `{fig['path']}`"
                  + (f", [PDF]({src.with_suffix('.pdf').name})" if src.with_suffix(".pdf").exists() else "") + ")"]
    lines += ["", "## What differs from the paper", "",
              f"- Scale: {cfg['scale']}.",
              "- Design choices that are ours are tagged in the code and listed in the README's model section "
              "(Provenance).",
              f"- Full tables: `{_shown(results)}/` (README there: command, machine and commit of its runs, and their "
              "wall time where a committed file records it)."]
    if log:
        lines += ["", "## Steps", "", *[f"- {entry}" for entry in log]]
    if wall_s is not None:  # steps ran (reproduce passes None otherwise): kept for a later --report-only / reuse
        (out / "steps.json").write_text(json.dumps({
            "written_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "commit": commit_state(git),
            "wall_s": round(wall_s, 1), "steps": [e for e in log if e.startswith("ran")]}, indent=2))
    elif (out / "steps.json").is_file() or (prior is not None and prior.is_file()):
        kept = out / "steps.json" if (out / "steps.json").is_file() else prior
        prev = json.loads(kept.read_text())
        lines += ["", f"## Steps of the run that produced these results ({prev['written_utc']}, commit "
                      f"{prev['commit']}, {_duration(prev['wall_s'])} in all; `{_shown(kept)}`)", "",
                  *[f"- {entry}" for entry in prev["steps"]]]
    elif prior is not None and (prior.parent / "report.md").is_file():  # a published report older than steps.json
        quoted = [ln for ln in (prior.parent / "report.md").read_text().splitlines() if ln.startswith("- ran (")]
        if quoted:
            lines += ["", f"## Steps of the run that produced these results (as its report "
                          f"`{_shown(prior.parent / 'report.md')}` lists them)", "", *quoted]
    commit = commit_state(git)
    lines += ["", f"Written {time.strftime('%Y-%m-%d %H:%M')} by `compresslab reproduce {paper} --profile {profile}"
              f"{' --publish' if publish else ''}` "
              f"on {cpu_model()} at commit {commit}"
              + (f", steps {_duration(wall_s)} wall time in all" if wall_s is not None else ", no step run (results reused)")
              + "; the folders it reads give their own runs' provenance."]
    report = out / "report.md"
    report.write_text("\n".join(lines) + "\n")
    from compresslab.reporting.beside import PUBLISHED_JS, REPORT, write_beside

    # the page beside it: this report and the results it reads (RD curves, BD matrix, per image); a published one
    # loads the committed plotly.js. Written after report.md: a page that fails is a log line, the report stays.
    write_beside([out, results], out / REPORT, shared_js=ROOT / PUBLISHED_JS if publish else None)
    if log_wandb:
        _log_to_wandb(paper, profile, compared, out, figures)
    return report


def _log_to_wandb(paper: str, profile: str, compared: list[tuple], out: Path, figures: list) -> None:
    """The report's table and figures as one W&B run (offline unless WANDB_MODE says otherwise)."""
    import wandb

    from compresslab.wandb_mode import wandb_mode

    run = wandb.init(project="compresslab-reproduce", name=f"{paper}-{profile}", mode=wandb_mode(),
                     dir=os.environ.get("WANDB_DIR", str(ROOT / "outputs")), job_type="reproduce",
                     config={"paper": paper, "profile": profile})
    log = {"published_vs_ours": wandb.Table(columns=["quantity", "paper", "ours", "paper's source"],
                                            data=[["" if c is None else str(c) for c in r] for r in compared])}
    if (out / "rd.png").exists():
        log["rd"] = wandb.Image(str(out / "rd.png"))
    for caption, png in figures:
        log[png.stem] = wandb.Image(str(png), caption=caption)
    run.log(log)
    run.finish()


def default_report_dir(paper: str, profile: str) -> Path:
    """The published report folder (committed): written only with --publish."""
    return ROOT / "experiments" / "reproduce" / f"{paper}_{profile}"


def report_dir(paper: str, profile: str, out: str | None, publish: bool, create: bool = True) -> Path:
    """--publish: the published folder (or --out); --out: a folder that holds no report and is not published;
    neither: a new outputs/reproduce/<paper>_<profile>/<id>/ (create=False: its name for a dry run)."""
    if publish:
        return Path(out) if out else default_report_dir(paper, profile)
    if out:
        if (guard(out, False) / "report.md").exists():
            raise ReproduceError(f"--out {out} already holds a report: a reproduction never writes over one; give a "
                                 f"new folder (without --out it makes one under outputs/reproduce/)")
        return Path(out)
    return new_dir("reproduce", f"{paper}_{profile}", create=create)


def unrecorded_times(dest: Path) -> bool:
    """A published report that lists measured step times no steps.json keeps (written before steps.json existed)."""
    report = dest / "report.md"
    return report.is_file() and "- ran (" in report.read_text() and not (dest / "steps.json").is_file()


def dry_run_plan(paper: str, profile: str, out: str | None = None, rerun: bool = False, report_only: bool = False,
                 log_wandb: bool = False, step_args: list[str] | None = None, publish: bool = False) -> list[str]:
    """What ``reproduce`` would do, step by step with each command, reading only the configs and checking which
    files exist: nothing runs, nothing is written, W&B is not started."""
    cfg = papers()[paper]["profiles"][profile]
    table = f"{cfg['results']}/{cfg.get('table', 'rd_table.md')}"
    dest = report_dir(paper, profile, out, publish, create=False)
    tree = None if publish else dest
    steps = [] if report_only else run_steps(paper, profile, rerun=rerun, dry_run=True, step_args=step_args,
                                             tree=tree)
    if report_only:
        steps.append("steps: none (--report-only)")
    report = dest / "report.md"
    n = (0 if report_only else len(cfg["steps"])) + 1
    if report_only and not (ROOT / table).exists():
        steps.append(f"step {n}: would stop: {_missing_results(paper, profile, True, False)}")
        return steps
    source = table if (ROOT / table).exists() and not rerun else f"{table}, which the steps above write"
    steps.append(f"step {n}: would write the report {report} from {source} (and copy its figures beside it), and "
                 f"its page {dest / 'report.html'} (compresslab report {dest} {cfg['results']})")
    steps.append(f"step {n + 1}: would log the report to W&B (project compresslab-reproduce, mode "
                 f"{os.environ.get('WANDB_MODE') or 'offline'})" if log_wandb else
                 f"step {n + 1}: no W&B run (--no-wandb)")
    return steps


def reproduce(paper: str, profile: str, out: str | None = None, rerun: bool = False, report_only: bool = False,
              dry_run: bool = False, log_wandb: bool = False, step_args: list[str] | None = None,
              publish: bool = False) -> Path | list[str]:
    """Run (or reuse) a profile's steps and write its report into a new folder (``--publish``: into the published
    one); a dry run returns the steps it would run (each with its command) and writes nothing."""
    known = papers()
    if paper not in known:
        raise ReproduceError(f"unknown paper {paper!r}; one of: {', '.join(known)} (compresslab reproduce --list)")
    if profile not in known[paper]["profiles"]:
        raise ReproduceError(f"{paper} has no profile {profile!r}; one of: {', '.join(known[paper]['profiles'])}")
    if dry_run:
        return dry_run_plan(paper, profile, out=out, rerun=rerun, report_only=report_only, log_wandb=log_wandb,
                            step_args=step_args, publish=publish)
    reuse = report_only or (results_present(paper, profile) and not rerun)
    if publish and reuse and unrecorded_times(report_dir(paper, profile, out, True)):
        raise ReproduceError(
            f"{_shown(report_dir(paper, profile, out, True))}/report.md lists the measured step times of the run that "
            f"produced its results and no steps.json keeps them: publishing a report whose steps were skipped would "
            f"replace them; publish a run that ran its steps (--rerun --publish), or leave the published report as it is")
    if report_only and not results_present(paper, profile):  # before a new folder is made for nothing
        raise ReproduceError(_missing_results(paper, profile, True, False))
    dest = report_dir(paper, profile, out, publish)
    tree = None if publish else dest
    t0 = time.monotonic()
    log = None if report_only else run_steps(paper, profile, rerun=rerun, step_args=step_args, tree=tree)
    ran = any(e.startswith("ran") for e in log or [])
    return write_report(paper, profile, dest, log, log_wandb=log_wandb, report_only=report_only,
                        wall_s=time.monotonic() - t0 if ran else None, tree=tree,
                        prior=None if ran else default_report_dir(paper, profile) / "steps.json", publish=publish)
