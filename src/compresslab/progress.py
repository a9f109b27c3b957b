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
