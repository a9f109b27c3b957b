"""A run's life around its training: the result of a run found finished, a start that failed, a stop on a signal
(checkpoint saved, state recorded, the command that continues printed, a SLURM job requeued), and the end of a
requeued process."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import WandbLogger
from omegaconf import DictConfig

from compresslab.training import runstore, signals, stopping
from compresslab.training.checks import objective_value

log = logging.getLogger(__name__)

def end_process_after_requeue() -> None:
    """The requeued job is the one that finishes: this process ends now, leaving no result for the launcher to read
    (submitit would take a result of this process as the job's), its W&B run and lock already released."""
    for h in logging.getLogger().handlers:
        h.flush()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def failed_start(run_dir: Path, error: Exception, new: bool, keep: bool) -> None:
    """A start that failed before its first step leaves no half-made run behind: a folder this start created is
    removed (the reason is on screen), except in a sweep, whose failure record points into it; a folder that holds an
    earlier start's work keeps it, with the reason in run.json (state failed). Failures during training are recorded
    by the training itself."""
    state = runstore.read_json(run_dir / runstore.STATE_FILE) or {}
    if state.get("state") in ("failed", "interrupted"):  # the training recorded it
        return
    reason = f"{type(error).__name__}: {(str(error).strip().splitlines() or [''])[0]}"
    if new and not keep and not (run_dir / "checkpoints").exists():
        import shutil

        shutil.rmtree(run_dir, ignore_errors=True)
        log.info("the run did not start (%s): its folder %s was removed", reason, run_dir)
        return
    runstore.mark_failed(run_dir, reason)


def finished_result(cfg: DictConfig, run_dir: Path, decision: dict[str, Any]) -> dict[str, Any]:
    """The same command again after the run finished: nothing is trained and no file is written."""
    done = runstore.read_json(run_dir / "done.json") or {}
    step = done.get("global_step", decision["state"].get("global_step"))
    log.info("%s already finished at step %s: nothing to train (its results: rd.json, done.json; resume=never starts a "
             "new run)", run_dir, step)
    metrics = {"val/loss": float(done["val_loss"])} if done.get("val_loss") is not None else {}
    objective = objective_value(cfg, run_dir, metrics) if (cfg.get("objective") != "val_loss" or metrics) else None
    return {"run_dir": str(run_dir), "global_step": step, "last_ckpt": done.get("last_ckpt"), "best_ckpt": None,
            "metrics": metrics, "objective": objective, "already_finished": True}


def checkpoint_step(ckpt_path: str | None) -> int | None:
    if not ckpt_path:
        return None
    try:
        return int(torch.load(ckpt_path, map_location="cpu", weights_only=True, mmap=True).get("global_step") or 0)
    except Exception:  # noqa: BLE001 - an unreadable checkpoint is reported by Lightning's own restore, in one place
        return None


def finish_wandb(loggers) -> None:
    for lg in loggers:
        if isinstance(lg, WandbLogger):
            lg.experiment.finish()  # flush now: a multirun starts the next W&B run in this process


def runstore_callback(record):
    """run.json follows the run's checkpoints (its step), so `compresslab runs` shows progress on any node."""

    class _Record(Callback):
        def on_save_checkpoint(self, trainer, pl_module, checkpoint) -> None:
            if record is not None:
                record.step(trainer.global_step)

    return _Record()


def stopped_result(cfg, run_dir: Path, trainer, stopper, record) -> dict[str, Any]:
    """A signal (Ctrl-C, SIGTERM, the SLURM warning) stopped training at a step boundary: the checkpoint is saved, the
    record says interrupted, the command that continues is printed, and a SLURM warning requeues the job. Inside a
    SLURM job a scheduler's signal also ends the process without a result (``end_process``): SLURM decides what comes
    next (a cancelled job stays CANCELLED, a requeued or pre-empted one runs again and writes the result)."""
    step = trainer.global_step
    got = list(dict.fromkeys(stopper.signals))
    signals.reset()  # honoured
    end_process = "SLURM_JOB_ID" in os.environ and any(s != "SIGINT" for s in got)
    if record is not None:
        record.end("interrupted", step, reason=f"stopped on {', '.join(got) or 'interrupt'}")
        finish_wandb(trainer.loggers)
        if stopper.requeue and stopping.requeue_slurm_job():
            record.end("interrupted", step, reason="requeued after the SLURM warning")
        print(f"\nstopped at step {step} (checkpoint {run_dir / 'checkpoints' / 'last.ckpt'}); continue with:\n  "
              f"{record.doc['resume_command']}", file=sys.stderr, flush=True)
    return {"run_dir": str(run_dir), "global_step": step, "last_ckpt": str(run_dir / "checkpoints" / "last.ckpt"),
            "best_ckpt": None, "metrics": {}, "objective": None, "interrupted": True, "end_process": end_process,
            "signals": got}
