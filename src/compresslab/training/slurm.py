"""SLURM: hydra-submitit-launcher's SlurmLauncher with what a sweep needs from it.

* ``hydra_plugins.compresslab_slurm_launcher.SlurmLauncher`` (``hydra/launcher=slurm`` / ``slurm_ddp``; Hydra takes
  launchers from its plugin package only): a job that SLURM itself ends (cancelled, timed out,
  node failure: no Hydra callback runs in it) is recorded in the sweep's ``failed_jobs`` like a job that raised, and
  the RD summary is written once in the submitting process when every job has ended, failed or not; job states are
  read with ``squeue --states=all`` where ``sacct`` has no accounting database to ask (submitit only knows sacct,
  and without it waits forever on a cancelled job).
* Pre-emption is not handled here: the warning signal is recorded and honoured at a step boundary, the job requeued
  by rank 0 (compresslab.training.signals, .stopping), and the requeued or resubmitted job continues its run folder
  (compresslab.training.runstore, ``resume=auto``).
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess

log = logging.getLogger(__name__)

def in_slurm_job() -> bool:
    return "SLURM_JOB_ID" in os.environ


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
