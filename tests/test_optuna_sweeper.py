"""Our Hydra sweeper on Optuna (src/hydra_plugins/compresslab_optuna_sweeper): the search-space syntax, a sampler
that does not replay on resume, a killed sweep resumed without losing or repeating work, several workers on one
real PostgreSQL study with one of them killed, and optuna-dashboard reading the studies."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

from conftest import REPO, free_port

# heartbeat, fail_stale_trials and the retry callback carry Optuna's "experimental" mark since 2.8-3.0
pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")

# short heartbeats so that a killed worker's trial goes stale within seconds (the defaults are 10 s / 60 s)
FAST_HEARTBEAT = ["hydra.sweeper.heartbeat_interval=1", "hydra.sweeper.grace_period=4",
                  "hydra.sweeper.poll_interval=1"]
# the probe of issue 27, at the smallest model and evaluation that still train and code real bitstreams
PROBE = ["train.py", "-m", "hparams_search=factorized_lr", "debug=smoke", "hydra.sweeper.n_trials=4"]
SMALL = ["logger=csv", "model.N=choice(32)", "callbacks.rd_eval.max_images=1"]


def test_search_space_is_hydra_override_syntax():
    from hydra_plugins.compresslab_optuna_sweeper.sweeper import search_space

    space, fixed, rest = search_space(["a=choice(1,2)", "lr=tag(log, interval(1e-4, 1e-2))", "n=range(1,5)",
                                       "x=interval(0.0, 1.0)", "k=interval(2, 8)", "b=choice(x)", "b=3", "~z"])
    assert space["a"] == CategoricalDistribution([1, 2])
    assert space["lr"] == FloatDistribution(1e-4, 1e-2, log=True)
    assert space["n"] == IntDistribution(1, 4, step=1)  # Hydra's range excludes its stop
    assert space["x"] == FloatDistribution(0.0, 1.0) and space["k"] == FloatDistribution(2.0, 8.0)  # floats
    assert fixed == {"b": "3"} and "b" not in space  # a later plain value fixes a parameter of the space
    assert rest == ["~z"]


def test_our_sweeper_and_its_configs_are_what_hydra_finds():
    from hydra import compose, initialize_config_dir
    from hydra.core.plugins import Plugins
    from hydra.plugins.sweeper import Sweeper

    import compresslab.config  # noqa: F401

    assert "hydra_plugins.compresslab_optuna_sweeper.sweeper.OptunaSweeper" in {
        f"{p.__module__}.{p.__name__}" for p in Plugins.instance().discover(Sweeper)}
    with initialize_config_dir(version_base="1.3", config_dir=str(REPO / "conf")):
        cfg = compose("train", ["hparams_search=quickstart_lr_warmup_pruned", "hydra/sweeper/sampler=gp"],
                      return_hydra_config=True)
    sw = cfg.hydra.sweeper
    assert sw._target_.startswith("hydra_plugins.compresslab_optuna_sweeper.")
    assert sw.sampler._target_ == "optuna.samplers.GPSampler"
    assert sw.pruner._target_ == "optuna.pruners.SuccessiveHalvingPruner" and sw.pruner.min_resource == 200
    assert cfg.callbacks.rd_eval.live_every_n_steps > 0  # what the pruner is fed


@pytest.mark.parametrize("sampler", ["TPESampler", "NSGAIISampler"])
def test_a_resumed_study_draws_what_an_uninterrupted_one_draws(sampler):
    """The sampler is rebuilt per trial from (seed, study name, trial number): a study stopped after 3 trials and
    continued by a new process (a new sampler object) asks the same parameters as one run straight through, and
    its later trials are not a replay of its first ones."""
    from hydra_plugins.compresslab_optuna_sweeper.sweeper import TrialSeededSampler

    factory = {"TPESampler": lambda **kw: optuna.samplers.TPESampler(n_startup_trials=3, **kw),
               "NSGAIISampler": lambda **kw: optuna.samplers.NSGAIISampler(population_size=3, **kw)}[sampler]

    def run(study, n):
        for _ in range(n):
            t = study.ask()
            x = t.suggest_float("x", -5, 5)
            k = t.suggest_categorical("k", ["a", "b", "c"])
            study.tell(t, (x - 1) ** 2 + (k != "b"))
        return study

    def study(storage):
        return optuna.create_study(study_name="s", storage=storage, load_if_exists=True,
                                   sampler=TrialSeededSampler(factory, seed=42))

    straight = [t.params for t in run(study(optuna.storages.InMemoryStorage()), 7).trials]
    storage = optuna.storages.InMemoryStorage()
    run(study(storage), 3)
    resumed = [t.params for t in run(study(storage), 4).trials]
    assert resumed == straight
    assert resumed[3:6] != resumed[:3]  # a sampler seeded once per process drew trials 0-2 again here


def _wait_for(cond, what: str, proc=None, limit: float = 600) -> None:
    end = time.monotonic() + limit
    while not cond():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the process ended (rc {proc.returncode}) before {what}")
        if time.monotonic() > end:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.2)


def _popen(args: list[str], log: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.Popen([sys.executable, *args], cwd=REPO, env=env, stdout=log.open("w"),
                            stderr=subprocess.STDOUT)


def _trial_dir(sweep: Path, number: int) -> Path | None:
    found = [p for p in sweep.glob(f"{number}_*") if (p / ".hydra").is_dir()]
    return found[0] if found else None


@pytest.fixture(scope="module")
def killed_and_rerun(tmp_path_factory):
    """The probe: the sweep killed (SIGKILL) while trial 3 trains, then the same command again."""
    sweep = tmp_path_factory.mktemp("probe") / "search"
    args = PROBE + SMALL + FAST_HEARTBEAT + [f"hydra.sweep.dir={sweep}"]
    first = _popen(args, sweep.parent / "first.log")
    try:
        _wait_for(lambda: _trial_dir(sweep, 3) is not None, "trial 3 to start", first)
        os.kill(first.pid, signal.SIGKILL)
        first.wait(60)
    finally:
        if first.poll() is None:
            first.kill()
    storage = f"sqlite:///{sweep}/optuna.db"
    states = {t.number: t.state for t in optuna.load_study(study_name="factorized_lr", storage=storage).trials}
    before = {p.parent.name: p.read_bytes() for p in sweep.glob("*/rd.json")}
    second = subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=900,
                            env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert second.returncode == 0, (second.stdout + second.stderr)[-3000:]
    return {"sweep": sweep, "storage": storage, "states_after_kill": states, "rd_before": before}


@pytest.mark.slow
def test_a_killed_sweep_resumes_without_losing_or_repeating_work(killed_and_rerun):
    sweep, storage = killed_and_rerun["sweep"], killed_and_rerun["storage"]
    assert killed_and_rerun["states_after_kill"][3] == TrialState.RUNNING  # what the kill left behind
    trials = optuna.load_study(study_name="factorized_lr", storage=storage).trials
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 4
    # trial 3 was failed by its stale heartbeat and retried with its parameters, as a new trial number
    assert trials[3].state == TrialState.FAIL
    retry = [t for t in complete if 3 in RetryHeartbeatStaleTrialCallback.retry_history(t)]
    assert len(retry) == 1 and retry[0].params == trials[3].params and retry[0].number > 3
    # distinct trials: no replay of the first run's draws
    assert len({json.dumps(t.params, sort_keys=True) for t in complete}) == 4
    # every trial's run directory is its own, named by its number; the first run's results are untouched
    for t in complete:
        run = sweep / t.user_attrs["run_dir"]
        assert run.name.startswith(f"{t.number}_") and (run / "rd.json").exists()
    for name, content in killed_and_rerun["rd_before"].items():
        assert (sweep / name / "rd.json").read_bytes() == content
    assert _trial_dir(sweep, 3) is not None  # the killed trial's folder is kept, not reused


def _dashboard_trials(storage: str, study_name: str) -> list[dict]:
    """Start optuna-dashboard's WSGI app on 127.0.0.1 and read the study's trials through its HTTP API."""
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    from optuna_dashboard import wsgi

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args):
            pass

    server = make_server("127.0.0.1", free_port(), wsgi(storage), handler_class=Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_port}"
        studies = json.load(urllib.request.urlopen(f"{base}/api/studies", timeout=60))["study_summaries"]
        study_id = next(s["study_id"] for s in studies if s["study_name"] == study_name)
        return json.load(urllib.request.urlopen(f"{base}/api/studies/{study_id}", timeout=60))["trials"]
    finally:
        server.shutdown()
        server.server_close()


def _check_dashboard(storage: str, study_name: str, sweep: Path) -> None:
    trials = _dashboard_trials(storage, study_name)
    complete = [t for t in trials if t["state"].upper() == "COMPLETE"]
    assert complete
    for t in complete:
        attrs = {a["key"]: a["value"] for a in t["user_attrs"]}
        run = sweep / attrs["run_dir"]
        rd = json.loads((run / "rd.json").read_text())["results"]
        assert float(attrs["bpp"]) == pytest.approx(rd["bpp"][0])
        assert float(attrs["psnr"]) == pytest.approx(rd["psnr-rgb"][0])


@pytest.mark.slow
def test_the_dashboard_opens_a_study_file(killed_and_rerun):
    pytest.importorskip("optuna_dashboard", reason="optuna-dashboard not installed: pip install -e '.[dashboard]'")
    _check_dashboard(killed_and_rerun["storage"], "factorized_lr", killed_and_rerun["sweep"])


@pytest.mark.slow
def test_three_workers_share_one_postgresql_study_and_survive_a_killed_one(postgres_url, tmp_path):
    n = 4
    sweep = tmp_path / "search"
    args = PROBE[:-1] + SMALL + FAST_HEARTBEAT + [
        f"hydra.sweeper.n_trials={n}", f"hydra.sweeper.storage={postgres_url}", "hydra.sweeper.study_name=shared",
        f"hydra.sweep.dir={sweep}"]
    logs = [tmp_path / f"worker{i}.log" for i in range(3)]
    workers = [_popen(args, log) for log in logs]
    try:
        # kill worker 0 while it trains a trial (its job has started: Hydra logged the launch, the folder exists)
        def training():
            text = logs[0].read_text()
            return "\t#" in text and any(_trial_dir(sweep, int(line.split("#")[1].split(":")[0]))
                                         for line in text.splitlines() if "\t#" in line)

        _wait_for(training, "worker 0 to start a trial", workers[0])
        os.kill(workers[0].pid, signal.SIGKILL)
        for w in workers[1:]:
            assert w.wait(900) == 0, next(log for log, p in zip(logs, workers) if p is w).read_text()[-3000:]
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
    killed = [int(line.split("#")[1].split(":")[0]) for line in logs[0].read_text().splitlines() if "\t#" in line]
    trials = optuna.load_study(study_name="shared", storage=postgres_url).trials
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == n
    assert trials[killed[-1]].state == TrialState.FAIL  # the killed worker's trial: failed by its heartbeat...
    assert any(killed[-1] in RetryHeartbeatStaleTrialCallback.retry_history(t) for t in complete)  # ...and redone
    assert len({json.dumps(t.params, sort_keys=True) for t in complete}) == n  # nothing run twice
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    dirs = [t.user_attrs["run_dir"] for t in complete]
    assert len(set(dirs)) == n and all((sweep / d / "rd.json").exists() for d in dirs)
    report = (sweep / "sweep_report" / "sweep_report.md").read_text()
    assert f"({len(trials)} trials, {n} complete" in report
    if pytest.importorskip("optuna_dashboard", reason="optuna-dashboard not installed"):
        _check_dashboard(postgres_url, "shared", sweep)


@pytest.mark.slow
def test_a_pruned_trial_stops_at_its_step_ends_cleanly_and_is_recorded_pruned(tmp_path):
    """Pruning on live RD: the live RD cost reaches trial.report every N steps, the study's pruner decides (here
    Optuna's ThresholdPruner set to prune any trial after its warm-up, so the outcome is known), training stops at
    that step, the job ends normally (its rd.json is written), and the sweeper tells the trial PRUNED."""
    from conftest import run_py

    sweep = tmp_path / "search"
    r = run_py(PROBE[:-1] + SMALL + [
        "hydra.sweeper.n_trials=2", f"hydra.sweep.dir={sweep}", "callbacks.rd_eval.live_every_n_steps=2",
        "callbacks.rd_eval.live_images=1", "callbacks.rd_eval.live_crop=64",
        "hydra.sweeper.pruner={_target_:optuna.pruners.ThresholdPruner,upper:0.0,n_warmup_steps:4}"], timeout=600)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    trials = optuna.load_study(study_name="factorized_lr", storage=f"sqlite:///{sweep}/optuna.db").trials
    assert [t.state for t in trials] == [TrialState.PRUNED] * 2
    for t in trials:
        assert sorted(t.intermediate_values) == [2, 4]  # reported every 2 steps until the pruner said stop
        assert t.user_attrs["pruned_at_step"] == 4 and t.user_attrs["steps"] == 4  # not debug=smoke's 8
        live = [json.loads(x) for x in (sweep / t.user_attrs["run_dir"] / "rd_live.jsonl").read_text().splitlines()]
        assert t.intermediate_values[4] == pytest.approx(live[-1]["rd_cost"])
        assert (sweep / t.user_attrs["run_dir"] / "rd.json").exists()
    assert "pruned at step 4" in (sweep / "sweep_report" / "sweep_report.md").read_text()
