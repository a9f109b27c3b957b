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

        from compresslab.sweeps.hydra_callbacks import record_failure, summary_metric, write_summary
        from compresslab.training.slurm import install_state_watcher

        install_state_watcher(self.state_poll_s)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        submitted: list[Any] = []
        real_map_array = submitit.AutoExecutor.map_array

        def map_array(executor, fn, *iterable):  # keep the jobs: their results are read here, one by one
            jobs = real_map_array(executor, fn, *iterable)
            submitted.extend(jobs)
            return [_Deferred() for _ in jobs]

        submitit.AutoExecutor.map_array = map_array
        try:
            super().launch(job_overrides, initial_job_idx)
        finally:
            submitit.AutoExecutor.map_array = real_map_array
        returns = []
        for job, overrides in zip(submitted, job_overrides):
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
                record_failure(sweep_dir, str(job.paths.folder), list(overrides), err)
                ret = JobReturn(overrides=list(overrides), status=JobStatus.FAILED)
                ret._return_value = err
                returns.append(ret)
        write_summary(sweep_dir, metric=summary_metric(self.config))  # every job has ended
        return returns


class _Deferred:
    def results(self):
        return [None]
