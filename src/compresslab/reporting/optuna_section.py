"""An Optuna study: Optuna's own plotly figures (history, PED-ANOVA importance, parallel coordinates, intermediate
values with pruned trials) and the trial table of ``sweeps.report`` (state, pruned-at step, values, parameters)."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from compresslab.reporting.sources import STORAGE_PREFIXES


def open_any(spec: str):
    """A sweep folder's study (sweeps.report.open_study) or the last study of a storage URL."""
    import optuna

    if not spec.startswith(STORAGE_PREFIXES):
        from compresslab.sweeps.report import open_study

        return open_study(Path(spec))
    try:
        summaries = optuna.get_all_study_summaries(spec)
    except Exception as e:  # noqa: BLE001 - any storage failure is the user's URL or server; one line names it
        raise ValueError(f"{spec}: cannot open this Optuna storage ({type(e).__name__}: {str(e).splitlines()[0]})") \
            from None
    if not summaries:
        raise ValueError(f"{spec} holds no study")
    return optuna.load_study(study_name=summaries[-1].study_name, storage=spec)


def study_figures(study) -> list[tuple[str, Any]]:
    """(title, figure or the reason there is none) for each view; a view Optuna cannot draw (too few trials, one
    parameter) is named, not fatal."""
    import optuna.visualization as vis
    from optuna.importance import PedAnovaImportanceEvaluator

    multi = len(study.directions) > 1
    target = {"target": (lambda t: t.values[0]), "target_name": "objective 0"} if multi else {}
    views = [("optimisation history", lambda: vis.plot_optimization_history(study, **target)),
             ("parameter importance (PED-ANOVA)",
              lambda: vis.plot_param_importances(study, evaluator=PedAnovaImportanceEvaluator(), **target)),
             ("parallel coordinates", lambda: vis.plot_parallel_coordinate(study, **target))]
    if any(t.intermediate_values for t in study.trials):
        views.append(("intermediate values (pruned trials stop early)", lambda: vis.plot_intermediate_values(study)))
    out = []
    for title, make in views:
        try:
            out.append((title, make()))
        except Exception as e:  # noqa: BLE001 - Optuna refuses views on small studies with assorted errors
            out.append((title, f"not drawn: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"))
    return out


def trials_html(study, spec: str) -> str:
    from compresslab.sweeps.report import load_trials

    if spec.startswith(STORAGE_PREFIXES):  # no sweep folder: the failed-jobs file of one cannot be read
        trials = [{"number": t.number, "state": t.state.name, "values": t.values, "params": dict(t.params),
                   "pruned_at_step": t.user_attrs.get("pruned_at_step"), "run_dir": t.user_attrs.get("run_dir")}
                  for t in study.trials]
    else:
        _, _, trials = load_trials(Path(spec), study)
    def params(t: dict[str, Any]) -> str:
        return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in t["params"].items())

    rows = "".join(
        f'<tr class="{t["state"].lower()}"><td>{t["number"]}</td><td>{t["state"]}'
        f'{" at step " + str(t["pruned_at_step"]) if t.get("pruned_at_step") is not None else ""}</td>'
        f'<td>{html.escape(", ".join(f"{v:.5g}" for v in t["values"] or []))}</td>'
        f"<td>{html.escape(params(t))}</td></tr>" for t in trials)
    return (f'<table class="trials"><caption>{len(trials)} trials of study {html.escape(study.study_name)}</caption>'
            f"<tr><th>#</th><th>state</th><th>values</th><th>parameters</th></tr>{rows}</table>")
