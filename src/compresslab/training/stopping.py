"""The training side of signal handling (see compresslab.training.signals, which only records them): stop at a step
boundary, all ranks agreeing, with one checkpoint; requeue a SLURM job after its warning."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.callbacks import Callback

from compresslab.training.signals import received

log = logging.getLogger(__name__)


class StopAtStepBoundary(Callback):
    """Honours recorded signals at step boundaries (see the module docstring). ``requeue_signals`` are those after
    which a SLURM job is requeued (the ``--signal=USR1@N`` warning); others (SIGTERM of scancel or a time limit,
    Ctrl-C) only save and stop."""

    def __init__(self, run_dir: str, requeue_signals: list[str] | tuple[str, ...] = ("SIGUSR1",),
                 on_save: Any = None, requeue_margin_s: float | None = 30.0):
        self.run_dir = Path(run_dir)
        self.requeue_signals = tuple(requeue_signals)
        self.margin = requeue_margin_s
        self.deadline: float | None = None  # monotonic time at which an early warning is honoured
        self._asked = False
        self.on_save = on_save  # called with the global step after the stop checkpoint is written
        self.stopped_at: int | None = None
        self.requeue = False
        self.signals: list[str] = []

    def _agree(self, trainer) -> tuple[bool, bool]:
        """(stop, requeue), true if any rank received such a signal: one all-reduce of two numbers."""
        got = self._due(received())
        if trainer.world_size == 1:  # every step: no tensor, no collective where there is nothing to agree on
            return bool(got), any(n in self.requeue_signals for n in got)
        flags = torch.tensor([float(bool(got)), float(any(n in self.requeue_signals for n in got))])
        flags = trainer.strategy.reduce(flags.to(trainer.strategy.root_device), reduce_op="sum").cpu()
        return bool(flags[0] > 0), bool(flags[1] > 0)

    def _due(self, got: list[str]) -> list[str]:
        """The recorded signals that are due now. A requeue warning is due at once, unless it came early: SLURM
        looks at time limits every 30 s and may send the ``--signal`` warning up to 60 s before the time asked for
        (sbatch(1)), so with a short lead it can land during start-up, and a run whose start-up outlasts that gap
        would requeue forever without a step. When the job's end (squeue, asked once) is more than the margin but
        less than the margin plus 60 s away, the warning is due when the margin remains."""
        if not got or any(n not in self.requeue_signals for n in got) or self.margin is None:
            return got
        if not self._asked:
            self._asked = True
            left = slurm_time_left()
            if left is not None and self.margin < left <= self.margin + 60:
                self.deadline = time.monotonic() + left - self.margin
                log.info("time-limit warning %.0f s before the job's end: training on until %.0f s remain",
                         left, self.margin)
        return got if self.deadline is None or time.monotonic() >= self.deadline else []

    def on_train_start(self, trainer, pl_module) -> None:
        stop, requeue = self._agree(trainer)
        if stop:  # arrived during start-up or restore: the folder already holds this state; train nothing
            self._stop(trainer, requeue, save=False)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        stop, requeue = self._agree(trainer)
        if stop:
            self._stop(trainer, requeue, save=True)

    def _stop(self, trainer, requeue: bool, save: bool) -> None:
        self.signals = received()
        self.requeue = requeue
        self.stopped_at = trainer.global_step
        if save:
            # every rank calls it (Lightning writes on rank 0 and synchronises); Lightning supports a save in
            # on_train_batch_end for an exact restart (its RESTARTED_ON_TRAIN_BATCH_END stage)
            trainer.save_checkpoint(str(self.run_dir / "checkpoints" / "last.ckpt"))
        # the folder's newest checkpoint is the state at the boundary (or, stopped before any step, the one it
        # started from): no later save (ModelCheckpoint at the end of the cut-short epoch, after more RNG draws and a
        # counted epoch) may replace it
        from lightning.pytorch.callbacks import ModelCheckpoint

        for cb in trainer.callbacks:
            if isinstance(cb, ModelCheckpoint):
                for hook in ("on_train_epoch_end", "on_validation_end", "on_train_end", "on_train_batch_end"):
                    setattr(cb, hook, lambda *a, **k: None)
        if save:
            if self.on_save is not None and trainer.is_global_zero:
                self.on_save(trainer.global_step)
        trainer.should_stop = True
        # Lightning validates when should_stop is set (for early stopping); a pre-emption has seconds, not a
        # validation, to spare, and the continued run validates on its own schedule
        epoch_loop = getattr(trainer.fit_loop, "epoch_loop", None)
        if epoch_loop is not None and hasattr(epoch_loop, "_should_check_val_fx"):
            epoch_loop._should_check_val_fx = lambda *a, **k: False
        if trainer.is_global_zero:
            log.info("stopped at step %d on %s%s", trainer.global_step, ", ".join(dict.fromkeys(self.signals)),
                     " (checkpoint saved)" if save else " (before any step: nothing new to save)")


def stopped_on_signal(trainer) -> bool:
    """Whether this fit was stopped by a recorded signal (callbacks that produce results skip their end-of-fit work)."""
    return any(isinstance(c, StopAtStepBoundary) and c.stopped_at is not None for c in trainer.callbacks)


def slurm_time_left() -> float | None:
    """Seconds until this SLURM job's time limit (squeue's %L), None outside SLURM, without a limit or on error."""
    job = os.environ.get("SLURM_JOB_ID")
    if not job:
        return None
    try:
        r = subprocess.run(["squeue", "-h", "-j", job, "-o", "%L"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.fullmatch(r"(?:(\d+)-)?(?:(\d+):)?(\d+):(\d+)", r.stdout.strip())
    if r.returncode != 0 or not m:  # UNLIMITED, NOT_SET, an error
        return None
    d, h, mi, sec = (int(x) if x else 0 for x in m.groups())
    return float(((d * 24 + h) * 60 + mi) * 60 + sec)


def requeue_slurm_job() -> bool:
    """Put this SLURM job back in the queue (same job id): it continues from the checkpoint just saved."""
    import subprocess

    job = os.environ.get("SLURM_ARRAY_JOB_ID") and \
        f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ.get('SLURM_ARRAY_TASK_ID')}" or os.environ.get("SLURM_JOB_ID")
    if not job:
        return False
    r = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True)
    if r.returncode != 0:
        log.error("scontrol requeue %s failed: %s", job, r.stderr.strip())
        return False
    log.info("SLURM job %s requeued: it continues from the saved checkpoint", job)
    return True
