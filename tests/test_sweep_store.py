"""The study store of our Optuna sweeper, run as a user runs it (`python train.py -m hparams_search=…` in a
subprocess, real SQLite and PostgreSQL): a changed search space and a bad storage URL are one line before any
trial exists, `postgresql://` runs on the psycopg2 the `postgres` extra installs, and a trial left RUNNING by a
process that died (before its first heartbeat, or by an error before its job ran) is failed and retried."""

from __future__ import annotations

import time
from pathlib import Path

import optuna
import pytest
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

from conftest import run_py

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")

RECIPE = ["train.py", "-m", "hparams_search=factorized_lr", "debug=smoke", "logger=csv",
          "callbacks.rd_eval.max_images=1"]
SPACE = {"optim.lr": "tag(log, interval(1e-4, 3e-3))", "model.N": "choice(32)",
         "optim.scheduler.name": "choice(plateau, none)"}  # the recipe's space with model.N='choice(32)'


def _study(sweep: Path, create: bool = True) -> optuna.Study:
    sweep.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{sweep}/optuna.db"
    return (optuna.create_study(study_name="factorized_lr", storage=url, load_if_exists=True) if create
            else optuna.load_study(study_name="factorized_lr", storage=url))


def _space(**change):
    from hydra_plugins.compresslab_optuna_sweeper.space import search_space

    return search_space([f"{k}={v}" for k, v in {**SPACE, **change}.items()])[0]


def _one_line(r) -> str:
    err = [line for line in r.stderr.splitlines() if line.strip() and not line.startswith(("[I ", "[W "))]
    assert r.returncode != 0 and len(err) == 1 and "Traceback" not in r.stderr, r.stdout[-2000:] + r.stderr[-3000:]
    return err[0]


def test_a_changed_search_space_is_refused_in_one_line_before_any_trial(tmp_path):
    """sweeps.md's `model.N='choice(32)'` added to a study whose trials drew N from choice(64, 128)."""
    sweep = tmp_path / "search"
    study = _study(sweep)
    study.add_trial(optuna.trial.create_trial(params={"model.N": 64, "optim.lr": 1e-3, "optim.scheduler.name": "none"},
                                              distributions=_space(**{"model.N": "choice(64, 128)"}), value=1.0))
    r = run_py(RECIPE + [f"hydra.sweep.dir={sweep}", "model.N=choice(32)"], timeout=300)
    line = _one_line(r)
    assert line.startswith("sweep error: study factorized_lr") and "1 trials" in line and "model.N: choice(64, 128) -> choice(32)" in line, line
    assert "hydra.sweeper.study_name=factorized_lr_2" in line, line
    trials = _study(sweep, create=False).trials
    assert len(trials) == 1 and trials[0].state == TrialState.COMPLETE  # no trial was created, none left RUNNING


def test_a_study_whose_space_is_unchanged_continues_whatever_else_the_command_says(tmp_path):
    """The space recorded by an earlier sweep, the same space asked again with other non-search overrides (a
    different logger, no smoke switch): no refusal; the study already holds its n_trials, so nothing trains."""
    from hydra_plugins.compresslab_optuna_sweeper.space import SPACE_ATTR, space_record

    sweep = tmp_path / "search"
    study = _study(sweep)
    study.set_user_attr(SPACE_ATTR, space_record(_space(), {}))
    study.add_trial(optuna.trial.create_trial(params={"model.N": 32, "optim.lr": 1e-3, "optim.scheduler.name": "none"},
                                              distributions=_space(), value=1.0))
    args = [a for a in RECIPE if a not in ("debug=smoke", "logger=csv")]
    r = run_py(args + [f"hydra.sweep.dir={sweep}", "model.N=choice(32)", "hydra.sweeper.n_trials=1"], timeout=300)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    assert len(_study(sweep, create=False).trials) == 1
    # the same study with one recipe parameter pinned to a value: its space changed, refused
    line = _one_line(run_py(args + [f"hydra.sweep.dir={sweep}", "model.N=32", "hydra.sweeper.n_trials=1"], timeout=300))
    assert "model.N: choice(32) -> 32" in line, line


def test_a_malformed_or_driverless_storage_url_is_one_line(tmp_path):
    sweep = tmp_path / "search"
    line = _one_line(run_py(RECIPE + [f"hydra.sweep.dir={sweep}", "hydra.sweeper.storage=notaurl://x"], timeout=300))
    assert "hydra.sweeper.storage='notaurl://x'" in line and "sqlite:///" in line, line
    line = _one_line(run_py(RECIPE + [f"hydra.sweep.dir={sweep}", "hydra.sweeper.storage=postgres://u@h/db"],
                            timeout=300))
    assert "postgresql://" in line, line
    assert not sweep.exists() or not any(sweep.iterdir())  # refused before any study or trial was written


def test_an_error_before_the_job_ran_fails_the_trial_and_requeues_it_at_once(tmp_path):
    """A trial this process asked for and could not launch does not sit RUNNING until a heartbeat goes stale."""
    sweep = tmp_path / "search"
    (tmp_path / "boom.py").write_text("def space(cfg, trial):\n    raise RuntimeError('custom space broke')\n")
    r = run_py(RECIPE + [f"hydra.sweep.dir={sweep}", "model.N=choice(32)", "hydra.sweeper.custom_search_space=boom.space"],
               timeout=300, env={"PYTHONPATH": str(tmp_path)})
    assert r.returncode != 0 and "custom space broke" in r.stderr
    trials = _study(sweep, create=False).trials
    assert trials[0].state == TrialState.FAIL and "custom space broke" in trials[0].user_attrs["fail_reason"]
    assert trials[1].state == TrialState.WAITING and RetryHeartbeatStaleTrialCallback.retry_history(trials[1]) == [0]
    assert trials[1].params == trials[0].params and "fail_reason" not in trials[1].user_attrs


@pytest.mark.slow
def test_a_trial_left_running_without_a_heartbeat_is_failed_and_retried_after_the_grace_period(tmp_path):
    """What the old sweeper left behind (a RUNNING trial that never had a heartbeat): a plain rerun used to wait
    for it forever; now it is failed once the grace period has passed, and its retry trains with its parameters."""
    sweep = tmp_path / "search"
    left = _study(sweep).ask(fixed_distributions=_space())
    time.sleep(3)
    t0 = time.monotonic()
    r = run_py(RECIPE + [f"hydra.sweep.dir={sweep}", "model.N=choice(32)", "hydra.sweeper.n_trials=1",
                         "hydra.sweeper.grace_period=2", "hydra.sweeper.poll_interval=1"], timeout=600)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    trials = _study(sweep, create=False).trials
    assert trials[0].number == left.number and trials[0].state == TrialState.FAIL
    assert [t.state for t in trials[1:]] == [TrialState.COMPLETE]
    assert RetryHeartbeatStaleTrialCallback.retry_history(trials[1]) == [0] and trials[1].params == trials[0].params
    print(f"rerun with a heartbeat-less RUNNING trial: {time.monotonic() - t0:.0f} s")


@pytest.mark.slow
def test_postgresql_url_runs_on_the_installed_psycopg2_and_says_so(postgres_url, tmp_path):
    """The documented `hydra.sweeper.storage=postgresql://…` (SQLAlchemy 2.x maps it to psycopg 3; the postgres
    extra installs psycopg2). n_trials=0: the study is created and the sweep ends without training."""
    plain = postgres_url.replace("postgresql+psycopg2://", "postgresql://")
    sweep = tmp_path / "search"
    r = run_py(RECIPE + [f"hydra.sweep.dir={sweep}", "model.N=choice(32)", f"hydra.sweeper.storage={plain}",
                         "hydra.sweeper.study_name=pg", "hydra.sweeper.n_trials=0"], timeout=300)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    assert "using psycopg2 (what the postgres extra installs)" in r.stdout + r.stderr
    study = optuna.load_study(study_name="pg", storage=postgres_url)
    assert study.user_attrs["search_space"]["model.N"]["as"] == "choice(32)"
