"""Pruned vs unpruned Optuna studies of one search space (issue 27): training steps spent and best RD cost reached,
read from the committed study folders (their optuna.db and each trial's user attributes written by the sweeper).

    python experiments/search/pruning_comparison.py experiments/search/quickstart_lr_warmup_optuna5 \
        experiments/search/quickstart_lr_warmup_pruned [...] > experiments/search/pruning_comparison.md
"""

from __future__ import annotations

import argparse
from pathlib import Path

from optuna.trial import TrialState

from compresslab.sweeps.report import open_study


def summary(folder: Path) -> dict:
    study = open_study(folder)
    trials = study.get_trials(deepcopy=False)
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    best = min(done, key=lambda t: t.value) if done else None
    steps = sum(int(t.user_attrs.get("steps") or 0) for t in trials)
    seconds = sum(t.duration.total_seconds() for t in trials if t.duration)
    return {"folder": folder.name, "study": study.study_name,
            "pruner": (study.user_attrs.get("pruner") or {}).get("_target_", "none").rsplit(".", 1)[-1],
            "trials": len(trials), "complete": len(done),
            "pruned": sum(t.state == TrialState.PRUNED for t in trials),
            "failed": sum(t.state == TrialState.FAIL for t in trials), "steps": steps, "hours": seconds / 3600,
            "best": best}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("folders", nargs="+", type=Path, help="study folders; the first is the unpruned reference")
    rows = [summary(f) for f in ap.parse_args().folders]
    ref = rows[0]
    print("| study folder | pruner | trials (complete / pruned / failed) | training steps | vs first | "
          "trial time h | best RD cost | vs first | best trial |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        b = r["best"]
        rel_steps = r["steps"] / ref["steps"] if ref["steps"] else float("nan")
        rel_best = (b.value / ref["best"].value - 1) * 100 if b and ref["best"] else float("nan")
        params = ", ".join(f"{k.split('.')[-1]} {v:.3g}" if isinstance(v, float) else f"{k.split('.')[-1]} {v}"
                           for k, v in sorted(b.params.items())) if b else ""
        print(f"| {r['folder']} | {r['pruner']} | {r['trials']} ({r['complete']} / {r['pruned']} / {r['failed']}) "
              f"| {r['steps']} | {rel_steps:.2f}× | {r['hours']:.2f} | {b.value:.2f} | {rel_best:+.1f} % | "
              f"{b.number} ({params}) |")


if __name__ == "__main__":
    main()
