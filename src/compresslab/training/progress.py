"""What a person watching a run sees: one live bar over the whole run (steps, ETA, loss/bpp/PSNR) for terminals,
and a plain log line every N steps for runs followed through log files."""

from __future__ import annotations

import logging
import time
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback, RichProgressBar
from lightning.pytorch.utilities import rank_zero_only

log = logging.getLogger(__name__)

# shown on the bar, in this order, under short names
_BAR_METRICS = {"train/loss": "loss", "train/rate_loss": "rate loss", "train/bpp": "bpp", "train/psnr": "PSNR",
                "val/loss": "val loss"}


class StepProgressBar(RichProgressBar):
    """Lightning's rich bar counts batches per epoch and reads "Epoch 0/-2" on a max_steps run (max_epochs=-1); our
    runs are step-budgeted, so this bar spans trainer.max_steps (its remaining time is the run's ETA), survives epoch
    boundaries, and shows the train loss, bpp and PSNR. Falls back to per-epoch counting without max_steps."""

    REDRAW_S = 0.5
    _drawn_at = float("-inf")

    def _steps_total(self) -> int | None:
        ms = self.trainer.max_steps
        return int(ms) if ms and ms > 0 else None

    @property
    def total_train_batches(self) -> int | float:
        return self._steps_total() or super().total_train_batches

    def _get_train_description(self, current_epoch: int) -> str:
        total = self._steps_total()
        if total is None:
            return super()._get_train_description(current_epoch)
        return f"{'train (steps)':{max(len(self.validation_description), 13)}}"

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._steps_total() is None or self.train_progress_bar_id is None:
            super().on_train_epoch_start(trainer, pl_module)
            if self._steps_total() is not None:
                self._update(self.train_progress_bar_id, trainer.global_step)  # resumed runs start part-way
        # one bar for the whole run: no reset at epoch boundaries

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if self._steps_total() is None:
            return super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        if not self.is_disabled and self.train_progress_bar_id is None:
            self._initialize_train_progress_bar_id()
        # Reading the metrics is one device-to-host copy each (a GPU sync) and a redraw costs milliseconds of CPU:
        # both at most every REDRAW_S seconds, so a fast GPU step does not wait for the terminal.
        now = time.monotonic()
        if now - self._drawn_at >= self.REDRAW_S or trainer.global_step >= (self._steps_total() or 0):
            self._drawn_at = now
            self._update(self.train_progress_bar_id, trainer.global_step)
            self._update_metrics(trainer, pl_module)
            self.refresh()

    def get_metrics(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, Any]:
        items = super().get_metrics(trainer, pl_module)
        items.pop("v_num", None)
        for key in _BAR_METRICS:
            items.pop(key, None)
            items.pop(f"{key}_step", None)
        for key, short in _BAR_METRICS.items():
            v = trainer.callback_metrics.get(key)
            if v is not None and v.numel() == 1:
                items[short] = f"{float(v):.4g}" if short != "PSNR" else f"{float(v):.2f} dB"
        return items


class ProgressLog(Callback):
    """One plain log line every ``every_n_steps`` training steps: run name, step/max_steps, s/step, ETA, LR and the
    train loss/bpp/PSNR. Long recipes run without a live progress bar (logs go to files), so this is what a person
    following them reads (``tail -f <run>/train.log``)."""

    def __init__(self, name: str, every_n_steps: int = 500):
        self.name = name
        self.every = int(every_n_steps)
        self._t0: float | None = None
        self._step0 = 0

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._t0, self._step0 = time.monotonic(), trainer.global_step

    @rank_zero_only
    def on_train_batch_end(self, trainer: pl.Trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if self.every <= 0 or step % self.every or self._t0 is None or step == self._step0:
            return
        per_step = (time.monotonic() - self._t0) / (step - self._step0)
        total = trainer.max_steps if trainer.max_steps and trainer.max_steps > 0 else None
        m = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("train/") and v.numel() == 1}
        left = per_step * (total - step) if total else None
        eta = "" if left is None else f", ETA {left:.0f} s" if left < 120 else f", ETA {left / 60:.1f} min"
        log.info("%s: step %d%s, %.3f s/step%s, lr %.3g, loss %.4g, bpp %.4f, PSNR %.2f dB", self.name, step,
                 f"/{total} ({100 * step / total:.0f} %)" if total else "", per_step, eta,
                 trainer.optimizers[0].param_groups[0]["lr"], m.get("train/loss", m.get("train/rate_loss", float("nan"))),
                 m.get("train/bpp", float("nan")), m.get("train/psnr", float("nan")))


def format_duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


class EtaLine(Callback):
    """One line early in a run: the step budget, the measured s/step of the first steps (the very first, which
    includes start-up, is left out) and the ETA of training, so a 100,000-step recipe started on a laptop CPU says
    "days" in its first minute, with the smaller recipes that fit (``experiment=quickstart``, ``debug=smoke``)."""

    def __init__(self, measure_steps: int = 10, suggest_after_s: float = 3600.0):
        self.measure = int(measure_steps)
        self.suggest_after_s = float(suggest_after_s)
        self._t1: float | None = None
        self._step1 = 0
        self._val_s = 0.0            # validation inside the measured window is not a training step's cost
        self._val_t0: float | None = None
        self.line: str | None = None

    def on_validation_start(self, trainer, pl_module) -> None:
        self._val_t0 = time.monotonic()

    def on_validation_end(self, trainer, pl_module) -> None:
        if self._val_t0 is not None and self._t1 is not None:
            self._val_s += time.monotonic() - self._val_t0
        self._val_t0 = None

    @rank_zero_only
    def on_train_batch_end(self, trainer: pl.Trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.line is not None or self.measure <= 0:
            return
        step, total = trainer.global_step, trainer.max_steps
        if self._t1 is None:
            self._t1, self._step1 = time.monotonic(), step
            return
        if step - self._step1 < min(self.measure, max(1, (total or 0) - self._step1 - 1)) and step < (total or 0):
            return
        per_step = (time.monotonic() - self._t1 - self._val_s) / (step - self._step1)
        if not total or total <= 0:
            self.line = f"training: {per_step:.3f} s/step over steps {self._step1 + 1}-{step} (no step budget)"
        else:
            left = per_step * (total - step)
            self.line = (f"training: {total:,} steps at {per_step:.3f} s/step (measured over steps "
                         f"{self._step1 + 1}-{step}): ETA {format_duration(left)} of training, plus validation and "
                         f"evaluation")
            if left > self.suggest_after_s and trainer.accelerator.__class__.__name__ == "CPUAccelerator":
                self.line += ("; on a CPU that is long: experiment=quickstart (about 4 min) or debug=smoke (seconds) "
                              "check the whole pipeline, trainer=gpu trains the full recipe")
        log.info(self.line)
