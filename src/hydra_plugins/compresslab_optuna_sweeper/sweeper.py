"""A Hydra sweeper on Optuna's ask-and-tell API (``hydra/sweeper=optuna``), replacing hydra-optuna-sweeper (which
pins optuna<3). What it adds to that plugin's behaviour:

- **n_trials is the study's target**, over every process that shares it: a sweep asks for trials until the study
  holds ``n_trials`` finished ones (complete, pruned, or failed by their own job), so rerunning an interrupted
  command continues the study instead of starting another batch, and several workers on one storage (processes,
  machines, a SLURM array) split the work and stop together.
- **Workers that die**: on an RDB storage (SQLite, PostgreSQL) each running trial has a heartbeat (Optuna's own
  heartbeat thread; its first beat is recorded as the trial is asked for); a trial whose heartbeat is older than
  ``grace_period``, or that never had one and started longer ago, is failed and re-queued with its parameters by
  ``RetryHeartbeatStaleTrialCallback``, and the next ``ask`` of any worker picks it up. A trial this process could
  not launch (an error before its job ran) is failed and re-queued at once.
- **A study's search space is fixed**: recorded in the study at its first sweep; a command whose space differs
  from it is refused in one line before any trial is asked (name the study, suggest a new study name). The storage
  URL is checked first (``storage.checked_url``): a malformed one is one line, and ``postgresql://`` runs on the
  installed psycopg2 (the ``postgres`` extra), saying so.
- **No replay on resume**: the sampler is rebuilt for every trial with a seed derived from (sampler seed, study
  name, trial number), so trial 7 of a resumed study does not repeat trial 0's draw, while the same study run again
  from scratch draws the same parameters.
- **Run directories named by trial number**: a trial runs as Hydra job number ``trial.number``, so
  ``hydra.sweep.subdir=${hydra.job.num}_...`` never reuses a folder when a study is resumed or shared.
- **Pruning**: with ``hydra.sweeper.pruner`` set, the job receives ``optuna_trial.{study_name,storage,number}``
  overrides; CompressLab's training reports its live real-bitstream RD cost with ``trial.report`` and stops when the
  pruner says so (``compresslab.training.callbacks.OptunaPruning``); the trial is then told PRUNED.
- After each job: the trial's user attributes ``run_dir``, ``bpp``, ``psnr`` and ``steps`` from its ``rd.json``
  (shown by optuna-dashboard), and ``fail_reason`` for a failed job.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, List, MutableSequence, Optional, Sequence, Tuple

import optuna
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn, JobStatus
from hydra.errors import CompactHydraException
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from hydra.utils import get_method, instantiate
from omegaconf import DictConfig, OmegaConf
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, Trial, TrialState

from hydra_plugins.compresslab_optuna_sweeper.space import check_space, grid_choices, search_space
from hydra_plugins.compresslab_optuna_sweeper.storage import (SweepError, checked_url, fail_and_requeue,
                                                              fail_stale_trials, masked, open_study)

log = logging.getLogger(__name__)
# heartbeat, fail_stale_trials and the retry callback are marked experimental since Optuna 2.8-3.0; they are what
# this sweeper is built on, so their per-call warnings say nothing to a user
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

STUDY_FILE = "optuna_study.json"  # <sweep dir>/optuna_study.json: which study this sweep folder belongs to
TRIAL_KEY = "optuna_trial"        # the job's config key with the study and trial number (for pruning)
PRUNED_ATTR = "pruned_at_step"    # user attribute set by the job when its pruner stopped it


# -- a sampler seeded per trial -------------------------------------------------------------------------------------

def trial_seed(seed: int, study_name: str, number: int) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}/{study_name}/{number}".encode()).digest()[:4], "little")


class TrialSeededSampler(BaseSampler):
    """Delegates to a fresh instance of the configured Optuna sampler for every trial, seeded from (seed, study
    name, trial number). Optuna's samplers keep their state in the study (the trials, NSGA-II's generations, the
    grid's visited points), not in the instance, except for the random generator: one generator seeded once per
    process replays the same draws on every rerun; this one draws what trial N would draw in any process."""

    def __init__(self, factory: Callable[..., BaseSampler], seed: Optional[int]) -> None:
        self._factory = factory
        self._seed = seed
        self._by_trial: Dict[int, BaseSampler] = {}
        self.name = type(self).__name__

    def _for(self, study: optuna.Study, trial: FrozenTrial) -> BaseSampler:
        if trial.number not in self._by_trial:
            kwargs = {} if self._seed is None else {"seed": trial_seed(self._seed, study.study_name, trial.number)}
            self._by_trial[trial.number] = self._factory(**kwargs)
        return self._by_trial[trial.number]

    def before_trial(self, study, trial) -> None:
        self._for(study, trial).before_trial(study, trial)

    def infer_relative_search_space(self, study, trial):
        return self._for(study, trial).infer_relative_search_space(study, trial)

    def sample_relative(self, study, trial, search_space):
        return self._for(study, trial).sample_relative(study, trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self._for(study, trial).sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study, trial, state, values) -> None:
        inner = self._by_trial.pop(trial.number, None)
        if inner is not None:
            inner.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        for s in self._by_trial.values():
            s.reseed_rng()


# -- the sweeper ----------------------------------------------------------------------------------------------------

class OptunaSweeper(Sweeper):
    def __init__(self, sampler: Any, direction: Any, storage: Optional[str], study_name: Optional[str],
                 n_trials: int, n_jobs: int, max_failure_rate: float, params: Optional[DictConfig],
                 custom_search_space: Optional[str], pruner: Any = None, heartbeat_interval: int = 10,
                 grace_period: int = 60, max_retry: int = 3, poll_interval: float = 5.0) -> None:
        if not 0.0 <= max_failure_rate <= 1.0:
            raise ValueError(f"hydra.sweeper.max_failure_rate={max_failure_rate} must lie in [0, 1]")
        self.sampler_cfg = OmegaConf.to_container(sampler, resolve=True) if sampler is not None else None
        self.direction = direction
        self.storage = storage
        self.study_name = study_name
        self.n_trials = int(n_trials)
        self.n_jobs = max(1, int(n_jobs))
        self.max_failure_rate = float(max_failure_rate)
        self.params = params
        self.custom_search_space = get_method(custom_search_space) if custom_search_space else None
        self.pruner_cfg = OmegaConf.to_container(pruner, resolve=True) if pruner is not None else None
        self.heartbeat_interval = int(heartbeat_interval)
        self.grace_period = int(grace_period)
        self.max_retry = max_retry
        self.poll_interval = float(poll_interval)

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(config=config, hydra_context=hydra_context,
                                                                task_function=task_function)
        self.sweep_dir = Path(str(config.hydra.sweep.dir))

    # -- pieces --------------------------------------------------------------------------------------------------

    def directions(self) -> List[str]:
        d = self.direction
        return [str(x) for x in d] if isinstance(d, (MutableSequence, tuple)) else [str(d)]

    def open_study(self, sampler: BaseSampler, directions: List[str]):
        """(storage, study) on the checked URL (in memory without one: one process, nothing to resume)."""
        if self.storage is not None:
            self.storage = checked_url(str(self.storage))  # the jobs' pruning callback gets the same URL
        return open_study(self.storage, self.study_name, sampler, directions, self.heartbeat_interval,
                          self.grace_period, self.max_retry)

    def build_sampler(self, space: Dict[str, BaseDistribution]) -> Tuple[BaseSampler, Optional[int]]:
        cfg = dict(self.sampler_cfg or {"_target_": "optuna.samplers.TPESampler"})
        seed = cfg.pop("seed", None)
        grid_size = None
        if cfg["_target_"] == "optuna.samplers.GridSampler":
            grid = {k: grid_choices(v) for k, v in space.items()}
            cfg["search_space"] = grid
            grid_size = 1
            for v in grid.values():
                grid_size *= len(v)
        factory = instantiate(cfg, _partial_=True, _convert_="all")
        sampler = TrialSeededSampler(factory, None if seed is None else int(seed))
        sampler.name = cfg["_target_"].rsplit(".", 1)[-1]
        return sampler, grid_size

    def overrides_for(self, trial: Trial, fixed: Dict[str, str], rest: List[str]) -> List[str]:
        for name, value in fixed.items():
            trial.set_user_attr(name, value)
        if self.custom_search_space is not None:
            self.custom_search_space(self.config, trial)
        params = {**trial.params, **fixed}
        out = [f"{k}={v}" for k, v in params.items()] + list(rest)
        if self.pruner_cfg is not None and self.storage is not None:
            out += [f"++{TRIAL_KEY}.study_name={quote(trial.study.study_name)}",
                    f"++{TRIAL_KEY}.storage={quote(str(self.storage))}", f"++{TRIAL_KEY}.number={trial.number}"]
        return out

    @staticmethod
    def finished(trials: Sequence[FrozenTrial]) -> int:
        """Trials that count towards n_trials: complete, pruned, and failed ones that no retry replaced."""
        replaced = {n for t in trials for n in RetryHeartbeatStaleTrialCallback.retry_history(t)}
        return sum(1 for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
                   or (t.state == TrialState.FAIL and t.number not in replaced))

    # -- the loop -------------------------------------------------------------------------------------------------

    def sweep(self, arguments: List[str]) -> None:
        params = [f"{k}={v}" for k, v in (self.params or {}).items()]
        space, fixed, rest = search_space(params + list(arguments))
        directions = self.directions()
        sampler, grid_size = self.build_sampler(space)
        target = self.n_trials if grid_size is None else min(self.n_trials, grid_size)
        try:  # before the sweep folder: a refusal leaves none, and is one line (Hydra would add a hint line)
            storage, study = self.open_study(sampler, directions)
            pinned = {k: v for k, v in fixed.items() if k in (self.params or {})}  # recipe params fixed, not debug=…
            check_space(study, self.storage, space, pinned, custom=self.custom_search_space is not None)
        except CompactHydraException as e:  # SweepError; Hydra's plugin scan reloads our modules, so not by its class
            sys.exit(f"sweep error: {e}")
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        if self.pruner_cfg is not None:
            if self.storage is None:
                log.warning("hydra.sweeper.pruner needs a storage the jobs can reach (hydra.sweeper.storage): "
                            "this in-memory study is not pruned")
            study.set_user_attr("pruner", self.pruner_cfg)  # what the jobs' pruning callback builds
        write_study_file(self.sweep_dir, study.study_name, self.storage)
        log.info("Study %s (%s), sampler %s, directions %s: %d finished trials wanted", study.study_name,
                 masked(self.storage), sampler.name, directions, target)
        waiting_logged = False
        while True:
            fail_stale_trials(study, storage, self.grace_period)  # a dead worker's trial: FAIL, re-queued as WAITING
            trials = study.get_trials(deepcopy=False)
            done = self.finished(trials)
            if done >= target:
                break
            running = sum(t.state == TrialState.RUNNING for t in trials)
            want = min(self.n_jobs, target - done - running)
            if want <= 0:  # the last trials run elsewhere; wait for them (or for their heartbeat to go stale)
                if not waiting_logged:
                    log.info("%d/%d trials finished, %d running elsewhere: waiting for them", done, target, running)
                    waiting_logged = True
                time.sleep(self.poll_interval)
                continue
            waiting_logged = False
            batch: List[Trial] = []
            try:
                with warnings.catch_warnings():
                    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
                    for _ in range(want):
                        batch.append(study.ask(fixed_distributions=space))  # the sampler suggests them
                        if storage is not None:  # a death before the job starts still leaves a heartbeat to go stale
                            storage.record_heartbeat(batch[-1]._trial_id)
                overrides = [self.overrides_for(t, fixed, rest) for t in batch]
                returns = self.launch(study, batch, overrides)
            except Exception as e:
                fail_and_requeue(study, storage, batch, f"{type(e).__name__}: {e}".splitlines()[0])
                raise
            failures = sum(self.tell(study, storage, t, r, len(directions)) for t, r in zip(batch, returns))
            if failures / len(batch) > self.max_failure_rate:
                log.error("%d of %d trials failed, more than max_failure_rate=%s", failures, len(batch),
                          self.max_failure_rate)
                for r in returns:
                    r.return_value  # raises the job's own exception
        self.write_results(study, directions)

    def launch(self, study: optuna.Study, batch: List[Trial], overrides: List[List[str]]) -> List[JobReturn]:
        """Each trial runs as Hydra job number trial.number (its run directory's name); a batch is launched in
        runs of consecutive numbers, with every trial's heartbeat beating while it runs."""
        from optuna.storages._heartbeat import get_heartbeat_thread  # the thread Study.optimize runs

        returns: List[JobReturn] = []
        i = 0
        while i < len(batch):
            j = i + 1
            while j < len(batch) and batch[j].number == batch[j - 1].number + 1:
                j += 1
            beats = [get_heartbeat_thread(t._trial_id, study._storage) for t in batch[i:j]]
            for b in beats:
                b.start()
            try:
                returns += list(self.launcher.launch(overrides[i:j], initial_job_idx=batch[i].number))
            finally:
                for b in beats:
                    b.join()
            i = j
        return returns

    def tell(self, study: optuna.Study, storage, trial: Trial, ret: JobReturn, n_objectives: int) -> bool:
        """Record the job's outcome; True when the trial failed."""
        for key, value in run_attrs(ret, self.sweep_dir).items():
            trial.set_user_attr(key, value)
        fresh = storage.get_trial(trial._trial_id) if storage is not None else None  # what the job wrote
        state, values, failed = TrialState.COMPLETE, None, False
        if ret.status != JobStatus.COMPLETED:
            err = ret._return_value
            trial.set_user_attr("fail_reason", f"{type(err).__name__}: {err}".splitlines()[0][:500])
            state, failed = TrialState.FAIL, True
        elif fresh is not None and PRUNED_ATTR in fresh.user_attrs:
            state = TrialState.PRUNED
        else:
            try:
                rv = ret.return_value
                values = [float(rv)] if n_objectives == 1 else [float(v) for v in rv]
                if len(values) != n_objectives:
                    raise ValueError(f"{len(values)} values for {n_objectives} objectives")
            except (TypeError, ValueError) as e:
                trial.set_user_attr("fail_reason", f"the job returned {ret._return_value!r}: {e}")
                state, values, failed = TrialState.FAIL, None, True
        try:
            study.tell(trial, values=values, state=state, skip_if_finished=True)
        except RuntimeError as e:  # the grid sampler calls study.stop() when its grid is exhausted
            if "Study.stop" not in str(e):
                raise
        if state == TrialState.PRUNED:
            log.info("trial %d pruned at step %s", trial.number, fresh.user_attrs[PRUNED_ATTR])
        return failed

    def write_results(self, study: optuna.Study, directions: List[str]) -> None:
        done = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
        if not done:
            log.warning("study %s has no complete trial", study.study_name)
            return
        if len(directions) == 1:
            best = study.best_trial
            results = {"name": "optuna", "best_params": best.params, "best_value": best.value}
            log.info("Best parameters: %s; best value: %s", best.params, best.value)
        else:
            results = {"name": "optuna", "solutions": [{"params": t.params, "values": t.values}
                                                       for t in study.best_trials]}
            log.info("Number of Pareto solutions: %d", len(study.best_trials))
        OmegaConf.save(OmegaConf.create(results), self.sweep_dir / "optimization_results.yaml")


def run_attrs(ret: JobReturn, sweep_dir: Path) -> Dict[str, Any]:
    """The trial's run directory (relative to the sweep folder) and its Kodak result, for the dashboard."""
    try:
        run_dir = Path(str(ret.hydra_cfg.hydra.runtime.output_dir))
    except Exception:  # noqa: BLE001 - a launcher that returns no Hydra config
        return {}
    attrs: Dict[str, Any] = {"run_dir": os.path.relpath(run_dir, sweep_dir)}
    rd = run_dir / "rd.json"
    if rd.exists():
        try:
            doc = json.loads(rd.read_text())
            attrs.update(bpp=float(doc["results"]["bpp"][0]), psnr=float(doc["results"]["psnr-rgb"][0]),
                         steps=int(doc["meta"]["step"]))
        except (KeyError, IndexError, TypeError, ValueError) as e:
            log.warning("%s: unreadable (%s)", rd, e)
    return attrs


def quote(s: str) -> str:
    """A Hydra override value in single quotes (URLs hold ':' and '/')."""
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"


def write_study_file(sweep_dir: Path, study_name: str, storage: Optional[str]) -> None:
    """<sweep dir>/optuna_study.json names the study and its storage (password hidden: keep it in ~/.pgpass), so
    the sweep report and optuna-dashboard find a study that lives in a database server."""
    if storage is None:
        return
    url = str(storage)
    db = sweep_dir / "optuna.db"
    if url.startswith("sqlite:///") and Path(url[len("sqlite:///"):]).resolve() == db.resolve():
        url = "sqlite:///optuna.db"  # relative to the sweep folder: a committed sweep names no machine path
    (sweep_dir / STUDY_FILE).write_text(json.dumps({"study_name": study_name, "storage": masked(url)}, indent=2)
                                        + "\n")


__all__ = ["OptunaSweeper", "TrialSeededSampler", "search_space", "trial_seed", "STUDY_FILE", "TRIAL_KEY",
           "PRUNED_ATTR", "SweepError", "masked"]
