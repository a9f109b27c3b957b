"""hydra-submitit-launcher's SlurmLauncher for CompressLab sweeps (conf/hydra/launcher/slurm.yaml, slurm_ddp.yaml): a
job that SLURM ends (scancel, timeout, node failure: no Hydra callback runs in it) is recorded in the sweep's
failed_jobs like a job that raised; the RD summary is written once every job has ended, in the submitting process;
job states come from squeue where sacct has no accounting database (compresslab.training.slurm.install_state_watcher),
at most ``state_poll_s`` apart; a job SLURM ended without a result is failed at once (submitit waits 15 s more for a
result file that a cancelled job never writes)."""

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from hydra.core.config_store import ConfigStore
from hydra_plugins.hydra_submitit_launcher.config import SlurmQueueConf
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher as SubmititSlurmLauncher

log = logging.getLogger(__name__)

# states in which SLURM itself ended a job: its process wrote no result (submitit's own states of that kind)
ENDED_BY_SLURM = ("CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE")


@dataclass
class CompressLabSlurmQueueConf(SlurmQueueConf):
    """hydra-submitit-launcher's SLURM settings, plus ``state_poll_s``."""

    _target_: str = "hydra_plugins.compresslab_slurm_launcher.SlurmLauncher"
    # most seconds between two job-state queries (sacct, or squeue): submitit asks 2, 4, 8, ... s after a
    # submission, then every state_poll_s (its default 60); a job SLURM ends is noticed that much later
    state_poll_s: int = 60


ConfigStore.instance().store(group="hydra/launcher", name="compresslab_submitit_slurm",
                             node=CompressLabSlurmQueueConf(), provider="compresslab_slurm_launcher")


class SlurmLauncher(SubmititSlurmLauncher):
    def __init__(self, state_poll_s: int = 60, **params: Any) -> None:
        if int(state_poll_s) < 1:
            raise ValueError(f"hydra.launcher.state_poll_s={state_poll_s} must be at least 1 (seconds)")
        self.state_poll_s = int(state_poll_s)
        super().__init__(**params)

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int):
        import submitit
        from hydra.core.utils import JobReturn, JobStatus

        from compresslab.sweeps.hydra_callbacks import html_report_from, record_failure, summary_metric, write_summary
        from compresslab.training.signals import act_as_default
        from compresslab.training.slurm import install_state_watcher

        act_as_default()  # this process only submits and waits: `kill` and Ctrl-C end it (the jobs run on)
        install_state_watcher(self.state_poll_s)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        submitted: list[Any] = []
        real_map_array = submitit.AutoExecutor.map_array

        def map_array(executor, fn, *iterable):  # keep the jobs: their results are read here, one by one
            inner = getattr(executor, "_executor", None)
            if inner is not None and hasattr(inner, "python"):  # signals recorded from the job's first moment
                import shlex
                import sys

                inner.python = f"{shlex.quote(sys.executable)} -m compresslab.training.slurm_entry"
            jobs = real_map_array(executor, fn, *iterable)
            submitted.extend(jobs)
            return [_Deferred() for _ in jobs]

        run_dirs = [self._run_dir(o, initial_job_idx + i) for i, o in enumerate(job_overrides)]
        finished = [_finished(d) for d in run_dirs]
        for d, o, f in zip(run_dirs, job_overrides, finished):
            if f:
                log.info("%s finished earlier (%s): not relaunched", " ".join(o), d)
        submitit.AutoExecutor.map_array = map_array
        try:  # only the points not finished yet, each under its own job number (its run folder's name)
            for start, block in _blocks([not f for f in finished]):
                super().launch(job_overrides[start:start + block], initial_job_idx + start)
        finally:
            submitit.AutoExecutor.map_array = real_map_array
        returns: list[Any] = []
        todo = [(d, o) for d, o, f in zip(run_dirs, job_overrides, finished) if not f]
        for job, (run_dir, overrides) in zip(submitted, todo):
            try:
                job.wait()
                state = job.state
                if state.split()[0] in ENDED_BY_SLURM and not job.paths.result_pickle.exists():
                    raise RuntimeError("it left no result (SLURM ended it)")
                returns.append(job.results()[0])
            except Exception as e:  # noqa: BLE001 - SLURM ended it (cancelled, timeout, node failure)
                state = job.state
                log.error("SLURM job %s (%s) ended %s", job.job_id, " ".join(overrides), state)
                err = RuntimeError(f"SLURM job {job.job_id} ended {state}: {str(e).strip().splitlines()[0]}")
                record_failure(sweep_dir, str(run_dir), list(overrides), err)
                ret = JobReturn(overrides=list(overrides), status=JobStatus.FAILED)
                ret._return_value = err
                returns.append(ret)
        write_summary(sweep_dir, metric=summary_metric(self.config),  # every job has ended
                      html_report=html_report_from(self.config))
        done = [JobReturn(overrides=list(o), status=JobStatus.COMPLETED) for o, f in zip(job_overrides, finished) if f]
        return done + returns

    def _run_dir(self, overrides: Sequence[str], job_num: int) -> Path:
        """The run folder a job of this sweep writes (hydra.sweep.dir / hydra.sweep.subdir), as the job will resolve it."""
        from omegaconf import open_dict

        cfg = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
        with open_dict(cfg):
            cfg.hydra.job.num = job_num
        return Path(str(cfg.hydra.sweep.dir)) / str(cfg.hydra.sweep.subdir)


def _finished(run_dir: Path) -> bool:
    """A point of a resubmitted sweep that needs no job: its run says finished (its files are left as they are)."""
    import json

    try:
        return json.loads((run_dir / "run.json").read_text()).get("state") == "finished"
    except (OSError, ValueError):
        return False


def _blocks(flags: list[bool]) -> list[tuple[int, int]]:
    """(start, length) of each run of True in ``flags``."""
    out: list[tuple[int, int]] = []
    for i, f in enumerate(flags):
        if f and out and out[-1][0] + out[-1][1] == i:
            out[-1] = (out[-1][0], out[-1][1] + 1)
        elif f:
            out.append((i, 1))
    return out


class _Deferred:
    def results(self):
        return [None]
