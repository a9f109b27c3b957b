"""hydra-submitit-launcher's SlurmLauncher for CompressLab sweeps (conf/hydra/launcher/slurm.yaml, slurm_ddp.yaml): a
job that SLURM ends (scancel, timeout, node failure: no Hydra callback runs in it) is recorded in the sweep's
failed_jobs like a job that raised; the RD summary is written once every job has ended, in the submitting process;
job states come from squeue where sacct has no accounting database (compresslab.training.slurm.install_squeue_fallback)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher as SubmititSlurmLauncher

log = logging.getLogger(__name__)


class SlurmLauncher(SubmititSlurmLauncher):
    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int):
        import submitit
        from hydra.core.utils import JobReturn, JobStatus

        from compresslab.sweeps.hydra_callbacks import record_failure, summary_metric, write_summary
        from compresslab.training.slurm import install_squeue_fallback

        install_squeue_fallback()
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
