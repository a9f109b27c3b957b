"""SLURM: hydra-submitit-launcher's SlurmLauncher with what a sweep needs from it, and where a requeued or
resubmitted job continues.

* ``hydra_plugins.compresslab_slurm_launcher.SlurmLauncher`` (``hydra/launcher=slurm`` / ``slurm_ddp``; Hydra takes
  launchers from its plugin package only): a job that SLURM itself ends (cancelled, timed out,
  node failure: no Hydra callback runs in it) is recorded in the sweep's ``failed_jobs`` like a job that raised, and
  the RD summary is written once in the submitting process when every job has ended, failed or not; job states are
  read with ``squeue --states=all`` where ``sacct`` has no accounting database to ask (submitit only knows sacct,
  and without it waits forever on a cancelled job).
* ``resume_checkpoint``: with ``ckpt_path`` unset, a job inside SLURM continues from its run directory's newest
  checkpoint: Lightning's ``hpc_ckpt_*.ckpt`` (written by ``SLURMEnvironment`` on the ``--signal=USR1@N`` warning,
  before it requeues the job) or ``checkpoints/last.ckpt`` (a job cancelled and submitted again into the same
  sweep folder).
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from pathlib import Path

log = logging.getLogger(__name__)

RESUME_POLICIES = ("never", "slurm", "always")


def in_slurm_job() -> bool:
    return "SLURM_JOB_ID" in os.environ


def resume_checkpoint(run_dir: Path, policy: str) -> Path | None:
    """The checkpoint a run with ``ckpt_path`` unset continues from under ``resume=policy``, or None."""
    if policy not in RESUME_POLICIES:
        from compresslab.errors import ConfigError

        raise ConfigError(f"resume={policy} is not one of {', '.join(RESUME_POLICIES)}")
    if policy == "never" or (policy == "slurm" and not in_slurm_job()):
        return None
    found = [p for p in (*run_dir.glob("hpc_ckpt_*.ckpt"), run_dir / "checkpoints" / "last.ckpt") if p.is_file()]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def _sacct_works() -> bool:
    if shutil.which("sacct") is None:
        return False
    r = subprocess.run(["sacct", "-n", "-X", "-j", "1"], capture_output=True, text=True)
    return r.returncode == 0


def install_state_watcher(delay_s: int = 60) -> None:
    """submitit's SLURM job watcher, asking at most ``delay_s`` apart (hydra.launcher.state_poll_s); pointed at
    squeue when sacct cannot answer (no accounting storage)."""
    from submitit.slurm import slurm

    current = slurm.SlurmJob.watcher
    if getattr(current, "_compresslab", False) and getattr(current, "_delay_s", None) == delay_s:
        return
    if _sacct_works():

        class SacctWatcher(slurm.SlurmInfoWatcher):
            _compresslab = True

        slurm.SlurmJob.watcher = SacctWatcher(delay_s=delay_s)
        return

    class SqueueWatcher(slurm.SlurmInfoWatcher):
        _compresslab = True

        def _make_command(self):
            to_check = sorted({x.split("_")[0] for x in self._registered - self._finished})
            if not to_check:
                return None
            # finished jobs stay listed for MinJobAge (300 s by default) with their final state
            return ["squeue", "--states=all", "-o", "%i|%T|%N", "-j", ",".join(to_check)]

        def read_info(self, string):
            text = string.decode() if isinstance(string, bytes) else string
            lines = text.splitlines()
            if lines:
                lines[0] = "JobID|State|NodeList"
            return super().read_info("\n".join(lines))

    slurm.SlurmJob.watcher = SqueueWatcher(delay_s=delay_s)


def exit_after_requeue(trainer) -> None:
    """Lightning's SLURM handler (the --signal=USR1 warning) saves hpc_ckpt_N.ckpt and requeues the job, then lets
    it run on until SLURM kills it; Lightning and submitit both ignore the SIGTERM that follows, so the old job
    kept training and its end (a W&B service already stopped, a result file) reached the submitting process before
    the requeued job had run. Here the process ends at once after the requeue, leaving no result: the requeued job
    is the one that finishes. (Wraps a private attribute of Lightning's Trainer; a no-op where it is absent.)"""
    connector = getattr(trainer, "_signal_connector", None)
    handler = getattr(connector, "_slurm_sigusr_handler_fn", None)
    if handler is None or not in_slurm_job():
        return

    def handle_and_exit(signum, frame):
        handler(signum, frame)
        log.info("checkpoint saved and job requeued: this run ends here, the requeued job continues from it")
        import sys

        if "wandb" in sys.modules:  # release the W&B run first: the requeued job resumes the same run id, and a
            try:                    # lingering service of this process made it fail with "run ID ... is in use"
                sys.modules["wandb"].finish()
            except Exception as e:  # noqa: BLE001 - ending here must not depend on logging
                log.warning("W&B run not finished cleanly before the requeue: %s", e)
        for h in logging.getLogger().handlers:
            h.flush()
        os._exit(0)

    connector._slurm_sigusr_handler_fn = handle_and_exit
