"""Optuna through Hydra: an RD objective measured with real bitstreams, failed trials recorded, studies resumable."""

import json
import math

import optuna
import pytest
import yaml

from compresslab.training.run import objective_value
from conftest import compose, run_py
from compresslab.conf import CONF_DIR


@pytest.mark.slow
def test_search_runs_records_and_resumes(tmp_path):
    sweep = tmp_path / "search"
    args = ["train.py", "-m", "hparams_search=factorized_lr", "debug=smoke", "logger=csv",
            f"hydra.sweep.dir={sweep}", "model.N=choice(32)"]
    r = run_py(args + ["hydra.sweeper.n_trials=2"], timeout=600)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    study = optuna.load_study(study_name="factorized_lr", storage=f"sqlite:///{sweep}/optuna.db")
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == 2 and best["best_value"] == pytest.approx(min(t.value for t in done))
    # each trial's value is the RD cost of its own run (the folder named by its trial number), from its rd.json
    for t in done:
        run = sweep / t.user_attrs["run_dir"]
        assert run.name.startswith(f"{t.number}_")
        lmbda = json.loads((run / "rd.json").read_text())["meta"]["lambda"]
        cfg = compose(["hparams_search=factorized_lr", "debug=smoke", f"lambda={lmbda}"])
        assert objective_value(cfg, run, {}) == pytest.approx(t.value, rel=1e-9)
    # the same command again does nothing more: the study holds its n_trials; a larger n_trials continues it
    r = run_py(args + ["hydra.sweeper.n_trials=2"], timeout=600)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    assert len(optuna.load_study(study_name="factorized_lr", storage=f"sqlite:///{sweep}/optuna.db").trials) == 2
    r = run_py(args + ["hydra.sweeper.n_trials=3"], timeout=600)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    trials = optuna.load_study(study_name="factorized_lr", storage=f"sqlite:///{sweep}/optuna.db").trials
    assert len(trials) == 3
    # the resumed sampler does not replay the first run's draws (it used to re-seed with ${seed})
    assert trials[2].params["optim.lr"] not in {t.params["optim.lr"] for t in trials[:2]}
    assert sorted(p.name.split("_")[0] for p in sweep.glob("*/rd.json") for p in [p.parent]) == ["0", "1", "2"]
    # the end-of-sweep report covers the whole study (3 trials), with the best trial and the history plot
    report = (sweep / "sweep_report" / "sweep_report.md").read_text()
    best3 = min(t.value for t in trials if t.value is not None)
    assert "3 trials" in report and f"objective {best3:.4g}" in report
    assert (sweep / "sweep_report" / "history.png").stat().st_size > 0


@pytest.mark.slow
def test_a_diverging_trial_is_recorded_failed_and_the_study_goes_on(tmp_path):
    sweep = tmp_path / "search"
    r = run_py(["train.py", "-m", "hparams_search=factorized_lr", "debug=smoke", "logger=csv", f"hydra.sweep.dir={sweep}",
                "model.N=choice(32)", "optim.lr=choice(1e-4,1e30)", "optim.scheduler.name=choice(none)",
                "hydra/sweeper/sampler=grid", "hydra.sweeper.n_trials=4"], timeout=900)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    trials = optuna.load_study(study_name="factorized_lr", storage=f"sqlite:///{sweep}/optuna.db").trials
    assert len(trials) == 2  # the grid sampler: n_trials capped at the grid's 2 points, each run once
    states = {t.params["optim.lr"]: t.state for t in trials}
    assert states.get(1e30) == optuna.trial.TrialState.FAIL and states.get(1e-4) == optuna.trial.TrialState.COMPLETE
    assert "non-finite training loss" in r.stdout + r.stderr
    report = (sweep / "sweep_report" / "sweep_report.md").read_text()
    assert "| FAIL |" in report and "| COMPLETE |" in report  # the failed trial is in the report's table
    fail_row = next(line for line in report.splitlines() if "| FAIL |" in line)
    assert "NonFiniteLossError" in fail_row  # with its reason, from the sweep's failed_jobs.json


def test_importance_shares_sum_to_one_and_rank_the_parameter_that_matters():
    """The report's importances are Optuna's (PED-ANOVA), normalised: the objective depends on lr alone, so lr
    ranks first, and the shares add up to 1 (the old variance shares summed to more)."""
    from compresslab.sweeps.report import importance

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(40):
        t = study.ask()
        lr = t.suggest_float("lr", 1e-4, 1e-2, log=True)
        t.suggest_categorical("warmup", [0, 50, 200])
        study.tell(t, (math.log10(lr) + 3) ** 2)
    imp = importance(study)
    assert set(imp) == {"lr", "warmup"} and sum(imp.values()) == pytest.approx(1.0)
    assert imp["lr"] > imp["warmup"]


def test_pareto_front():
    from compresslab.sweeps.report import pareto_front

    trials = [{"state": "COMPLETE", "values": [v, q], "params": {"lr": lr, "N": n}}
              for v, q, lr, n in [(1.0, 30, 1e-4, 64), (1.1, 30.5, 2e-4, 64), (3.0, 29, 1e-3, 128),
                                  (3.1, 31, 2e-3, 128)]]
    front = pareto_front(trials, ["minimize", "maximize"])
    assert sorted(t["values"][0] for t in front) == [1.0, 1.1, 3.1]  # (3.0, 29) is dominated


def test_objective_needs_its_measurement():
    from compresslab.errors import ConfigError
    from compresslab.training.run import validate_config

    with pytest.raises(ConfigError, match="callbacks.rd_eval.enabled=true"):
        validate_config(compose(["objective=kodak_rd_cost", "callbacks.rd_eval.enabled=false"]))
    with pytest.raises(ConfigError, match="not one of"):
        validate_config(compose(["objective=psnr"]))


def test_the_wandb_sweep_file_composes_with_our_config():
    """What can be checked without a W&B server: the sweep file parses, names a metric the RD callback logs, and the
    command the W&B agent would run (its ${args_no_hyphens} filled with sampled values) composes with Hydra."""
    import yaml

    from conftest import REPO

    spec = yaml.safe_load((CONF_DIR / "wandb" / "sweep_quickstart_lr.yaml").read_text())
    assert spec["program"] == "train.py" and spec["metric"] == {"name": "kodak/rd_cost", "goal": "minimize"}
    sampled = {k: (v["min"] if "min" in v else v["values"][-1]) for k, v in spec["parameters"].items()}
    args = []
    for item in spec["command"]:
        if item == "${args_no_hyphens}":
            args += [f"{k}={v}" for k, v in sampled.items()]
        elif not item.startswith("${"):
            args.append(item)
    cfg = compose(args)
    assert cfg.optim.lr == pytest.approx(1e-4) and cfg.optim.scheduler.warmup_steps == 500
    assert cfg.trainer.max_steps == 1200 and cfg.logger.wandb.offline is False
