"""Report of an Optuna study run through Hydra (hparams_search=...): best trial and its overrides, every trial
(with its training steps and, for a pruned one, the step it was stopped at), the optimisation history, parameter
importances and, for two objectives, the Pareto front in (bpp, PSNR) with the kodak/vtm curve. Written at the end of
such a sweep and by ``compresslab sweep-report SWEEP_DIR``.

Importance: Optuna's own ``optuna.importance.get_param_importances`` with the PED-ANOVA evaluator (no scikit-learn
needed): how much each parameter's distribution differs between the best trials (top 10 %) and all of them,
normalised so that the shares sum to 1. With a dozen trials it ranks parameters roughly and nothing more.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FAILED_FILE = "failed_jobs.json"  # written by hydra_callbacks.SweepRDSummary: a job's error line per failed job

STATE_COMPLETE = "COMPLETE"


def open_study(sweep_dir: Path):
    """The study of a sweep folder: the one named by <sweep>/optuna_study.json (written by the sweeper: a database
    server's study too; its password is not stored, keep it in ~/.pgpass) or the last one in <sweep>/optuna.db."""
    import optuna

    sweep_dir = Path(sweep_dir)
    ref = sweep_dir / "optuna_study.json"
    if ref.exists():
        doc = json.loads(ref.read_text())
        storage = doc["storage"]
        if storage == "sqlite:///optuna.db":  # relative to the sweep folder (a committed study)
            storage = f"sqlite:///{sweep_dir / 'optuna.db'}"
        return optuna.load_study(study_name=doc["study_name"], storage=storage)
    db = sweep_dir / "optuna.db"
    if not db.exists():
        raise FileNotFoundError(f"{db} not found: sweep-report reads the Optuna study of an hparams_search sweep "
                                f"(hydra.sweeper.storage=sqlite:///<sweep dir>/optuna.db)")
    storage = f"sqlite:///{db}"
    summaries = optuna.get_all_study_summaries(storage)
    if not summaries:
        raise ValueError(f"{db} holds no study")
    return optuna.load_study(study_name=summaries[-1].study_name, storage=storage)


def load_trials(sweep_dir: Path, study=None) -> tuple[str, list[str], list[dict[str, Any]]]:
    """(study name, directions, trials) of the sweep folder's study."""
    study = study or open_study(sweep_dir)
    trials = []
    for t in study.trials:
        values = t.values if t.values is not None else None
        trials.append({"number": t.number, "state": t.state.name, "values": values, "params": dict(t.params),
                       "seconds": t.duration.total_seconds() if t.duration else None,
                       "steps": t.user_attrs.get("steps"), "pruned_at_step": t.user_attrs.get("pruned_at_step"),
                       "run_dir": t.user_attrs.get("run_dir"),
                       "fail_reason": t.system_attrs.get("fail_reason") or t.user_attrs.get("fail_reason")})
    _add_job_errors(Path(sweep_dir), trials)
    return study.study_name, [d.name.lower() for d in study.directions], trials


def importance(study, objective: int = 0) -> dict[str, float]:
    """Optuna's parameter importances (PED-ANOVA, normalised: the shares sum to 1) for one objective; {} when the
    study has too few complete trials or its parameters do not vary."""
    import optuna
    from optuna.importance import PedAnovaImportanceEvaluator

    done = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))]
    if len(done) < 3:
        return {}
    try:
        imp = optuna.importance.get_param_importances(
            study, evaluator=PedAnovaImportanceEvaluator(),
            target=(lambda t: t.values[objective]) if len(study.directions) > 1 else None)
    except (ValueError, RuntimeError, ZeroDivisionError):
        return {}
    return {k: float(v) for k, v in imp.items()}


def _add_job_errors(sweep_dir: Path, trials: list[dict[str, Any]]) -> None:
    """Optuna stores no reason for a trial whose job raised; the sweep callback's failed_jobs.json does (the error
    line per job). Matched on the trial's parameters, since job numbers restart when a study is resumed."""
    path = sweep_dir / FAILED_FILE
    if not path.exists():
        return
    jobs = json.loads(path.read_text())

    def same(params: dict[str, Any], overrides: list[str]) -> bool:
        given = dict(o.split("=", 1) for o in overrides if "=" in o)
        for k, v in params.items():
            if k not in given:
                return False
            try:
                if float(given[k]) != float(v):
                    return False
            except (TypeError, ValueError):
                if str(given[k]) != str(v):
                    return False
        return True

    for t in trials:
        if t["state"] != STATE_COMPLETE and not t["fail_reason"]:
            job = next((j for j in reversed(jobs) if same(t["params"], j.get("overrides", []))), None)
            if job:
                t["fail_reason"] = job.get("error")


def pareto_front(trials: list[dict[str, Any]], directions: list[str]) -> list[dict[str, Any]]:
    done = [t for t in trials if t["state"] == STATE_COMPLETE and t["values"] is not None]
    sign = [1 if d == "minimize" else -1 for d in directions]

    def dominates(a, b):
        sa = [s * v for s, v in zip(sign, a["values"])]
        sb = [s * v for s, v in zip(sign, b["values"])]
        return all(x <= y for x, y in zip(sa, sb)) and any(x < y for x, y in zip(sa, sb))

    return [t for t in done if not any(dominates(o, t) for o in done if o is not t)]


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (list, tuple)):
        return ", ".join(_fmt(x) for x in v)
    return "" if v is None else str(v)


def _finish(fig, ax, xlabel: str, ylabel: str, path: Path) -> None:
    import matplotlib.pyplot as plt

    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_sweep_report(sweep_dir: str | Path, study=None) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sweep_dir = Path(sweep_dir)
    study = study or open_study(sweep_dir)
    name, directions, trials = load_trials(sweep_dir, study)
    out = sweep_dir / "sweep_report"
    out.mkdir(parents=True, exist_ok=True)
    done = [t for t in trials if t["state"] == STATE_COMPLETE and t["values"] is not None]
    params = sorted({k for t in trials for k in t["params"]})
    pruned = [t for t in trials if t["state"] == "PRUNED"]
    steps = [t["steps"] for t in trials if t["steps"] is not None]
    lines = [f"# Sweep report: study `{name}` ({len(trials)} trials, {len(done)} complete"
             + (f", {len(pruned)} pruned" if pruned else "") + ")", "",
             f"Sweep folder `{sweep_dir}`; directions: {', '.join(directions)}."
             + (f" Training steps spent: {sum(steps)} over {len(steps)} trials." if steps else ""), ""]
    if len(directions) == 1 and done:
        sign = 1 if directions[0] == "minimize" else -1
        best = min(done, key=lambda t: sign * t["values"][0])
        lines += [f"**Best trial {best['number']}**: objective {_fmt(best['values'][0])}; overrides: "
                  + " ".join(f"{k}={_fmt(v)}" for k, v in sorted(best["params"].items())), ""]
        fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
        xs = [t["number"] for t in done]
        ys = [t["values"][0] for t in done]
        run, cur = [], None
        for y in ys:
            cur = y if cur is None or sign * y < sign * cur else cur
            run.append(cur)
        ax.plot(xs, ys, "o", label="trial")
        ax.step(xs, run, where="post", label="best so far")
        ax.set_title(f"optimisation history: {name}", fontsize=9)
        _finish(fig, ax, "trial", "objective", out / "history.png")
        lines += ["![optimisation history](history.png)", ""]
    elif len(directions) == 2 and done:
        front = pareto_front(trials, directions)
        lines += [f"**Pareto front** ({len(front)} trials): " + ", ".join(
            f"trial {t['number']} ({_fmt(t['values'])})" for t in sorted(front, key=lambda t: t["values"][0])), ""]
        fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
        try:
            from compresslab.rd.anchors import load_anchor

            r, q = load_anchor("kodak/vtm").curve("psnr-rgb")
            hi = max(t["values"][0] for t in done)
            keep = [(b, v) for b, v in zip(r, q) if b <= 1.5 * hi]
            if keep:
                ax.plot(*zip(*keep), "--", color="gray", label="kodak/vtm")
        except Exception:  # noqa: BLE001 - the anchor is context only
            pass
        ax.plot([t["values"][0] for t in done], [t["values"][1] for t in done], "o", alpha=0.5, label="trial")
        fr = sorted(front, key=lambda t: t["values"][0])
        ax.plot([t["values"][0] for t in fr], [t["values"][1] for t in fr], "o-", color="C3", label="Pareto front")
        _finish(fig, ax, "bpp (real bitstream)", "PSNR RGB [dB]", out / "pareto.png")
        lines += ["![Pareto front](pareto.png)", ""]
    imp = importance(study)
    if imp:
        lines += ["## Parameter importance (Optuna's PED-ANOVA, shares sum to 1; a rough ranking with few trials)",
                  "", "| parameter | share |", "|---|---|"]
        lines += [f"| {k} | {v:.2f} |" for k, v in imp.items()] + [""]
    lines += ["## Trials", "", "A pruned trial's objective is its last live RD cost (the live subset), not comparable "
              "with the complete trials' full evaluation.", "",
              "| trial | state | objective | " + " | ".join(params) + " | steps | seconds | run dir | note |",
              "|" + "---|" * (len(params) + 7)]
    for t in trials:
        note = t["fail_reason"] or (f"pruned at step {t['pruned_at_step']}" if t["pruned_at_step"] is not None
                                    else None)
        lines.append(f"| {t['number']} | {t['state']} | {_fmt(t['values'])} | "
                     + " | ".join(_fmt(t["params"].get(p)) for p in params)
                     + f" | {_fmt(t['steps'])} | {_fmt(t['seconds'])} | {_fmt(t['run_dir'])} | {_fmt(note)} |")
    (out / "sweep_report.md").write_text("\n".join(lines) + "\n")
    (out / "trials.json").write_text(json.dumps({"study": name, "directions": directions, "trials": trials,
                                                 "importance": imp}, indent=2, default=str))
    return out / "sweep_report.md"


__all__ = ["importance", "load_trials", "open_study", "pareto_front", "write_sweep_report"]
