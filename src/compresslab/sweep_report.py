"""Report of an Optuna study run through Hydra (hparams_search=...): best trial and its overrides, every trial,
the optimisation history, parameter importances and, for two objectives, the Pareto front in (bpp, PSNR) with the
kodak/vtm curve. Written by ``compresslab sweep-report SWEEP_DIR`` (and at the end of such a sweep).

Importance: optuna 2.10's evaluators need scikit-learn, which we do not ship, so the report uses a simple,
stated measure: the share of the objective's variance explained by each parameter's marginal (between-group
variance over total variance). Parameters with at most 5 distinct values are grouped by value; others into rank
terciles, so a U-shaped response (a learning rate too low and too high both hurt) is seen, which a split at the
median would average away. With a dozen trials it ranks parameters roughly and nothing more; the report says so.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

STATE_COMPLETE = "COMPLETE"


def load_trials(sweep_dir: Path) -> tuple[str, list[str], list[dict[str, Any]]]:
    """(study name, directions, trials) from the study database in the sweep folder (optuna.db)."""
    import optuna

    db = Path(sweep_dir) / "optuna.db"
    if not db.exists():
        raise FileNotFoundError(f"{db} not found: sweep-report reads the Optuna study of an hparams_search sweep "
                                f"(hydra.sweeper.storage=sqlite:///<sweep dir>/optuna.db)")
    storage = f"sqlite:///{db}"
    summaries = optuna.get_all_study_summaries(storage)
    if not summaries:
        raise ValueError(f"{db} holds no study")
    name = summaries[-1].study_name
    study = optuna.load_study(study_name=name, storage=storage)
    trials = []
    for t in study.trials:
        values = t.values if t.values is not None else None
        trials.append({"number": t.number, "state": t.state.name, "values": values, "params": dict(t.params),
                       "seconds": t.duration.total_seconds() if t.duration else None,
                       "fail_reason": t.system_attrs.get("fail_reason") or t.user_attrs.get("fail_reason")})
    _add_job_errors(Path(sweep_dir), trials)
    return name, [d.name.lower() for d in study.directions], trials


def _add_job_errors(sweep_dir: Path, trials: list[dict[str, Any]]) -> None:
    """Optuna stores no reason for a trial whose job raised; the sweep callback's failed_jobs.json does (the error
    line per job). Matched on the trial's parameters, since job numbers restart when a study is resumed."""
    from .hydra_callbacks import FAILED_FILE

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


def variance_share(trials: list[dict[str, Any]], objective: int = 0) -> dict[str, float]:
    """Share of the objective's variance explained by each parameter's marginal groups (see module docstring)."""
    done = [t for t in trials if t["state"] == STATE_COMPLETE and t["values"] is not None]
    ys = [t["values"][objective] for t in done]
    if len(ys) < 3:
        return {}
    mean = sum(ys) / len(ys)
    total = sum((y - mean) ** 2 for y in ys)
    out = {}
    for p in sorted({k for t in done for k in t["params"]}):
        vals = [t["params"].get(p) for t in done]
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals)
        if numeric and len(set(vals)) > 5:
            order = sorted(range(len(vals)), key=lambda i: vals[i])
            keys = [""] * len(vals)
            for rank, i in enumerate(order):
                keys[i] = str(3 * rank // len(vals))  # rank terciles
        else:
            keys = [str(v) for v in vals]
        groups: dict[str, list[float]] = {}
        for k, y in zip(keys, ys):
            groups.setdefault(k, []).append(y)
        between = sum(len(g) * (sum(g) / len(g) - mean) ** 2 for g in groups.values())
        out[p] = between / total if total > 0 else 0.0
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


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


def write_sweep_report(sweep_dir: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sweep_dir = Path(sweep_dir)
    name, directions, trials = load_trials(sweep_dir)
    out = sweep_dir / "sweep_report"
    out.mkdir(parents=True, exist_ok=True)
    done = [t for t in trials if t["state"] == STATE_COMPLETE and t["values"] is not None]
    params = sorted({k for t in trials for k in t["params"]})
    lines = [f"# Sweep report: study `{name}` ({len(trials)} trials, {len(done)} complete)", "",
             f"Sweep folder `{sweep_dir}`; directions: {', '.join(directions)}.", ""]
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
            from .evaluation.anchors import load_anchor

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
    imp = variance_share(trials)
    if imp:
        lines += ["## Parameter importance (share of the objective's variance explained by each parameter's "
                  "marginal; a rough ranking with few trials)", "", "| parameter | share |", "|---|---|"]
        lines += [f"| {k} | {v:.2f} |" for k, v in imp.items()] + [""]
    lines += ["## Trials", "", "| trial | state | objective | " + " | ".join(params) + " | seconds | note |",
              "|" + "---|" * (len(params) + 5)]
    for t in trials:
        lines.append(f"| {t['number']} | {t['state']} | {_fmt(t['values'])} | "
                     + " | ".join(_fmt(t["params"].get(p)) for p in params)
                     + f" | {_fmt(t['seconds'])} | {_fmt(t['fail_reason'])} |")
    (out / "sweep_report.md").write_text("\n".join(lines) + "\n")
    (out / "trials.json").write_text(json.dumps({"study": name, "directions": directions, "trials": trials,
                                                 "importance": imp}, indent=2, default=str))
    return out / "sweep_report.md"


__all__ = ["load_trials", "pareto_front", "variance_share", "write_sweep_report"]
