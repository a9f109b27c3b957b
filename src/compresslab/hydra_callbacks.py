"""Hydra callbacks: create the sweep folder up front (for study storage in it) and, at the end of a multirun,
gather the runs' rd.json files into curves, BD-rates and a plot."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger(__name__)


class SweepRDSummary(Callback):
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        # The Optuna sweeper opens its study (sqlite:///<sweep dir>/optuna.db) before any job creates the folder.
        Path(config.hydra.sweep.dir).mkdir(parents=True, exist_ok=True)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        try:
            from .evaluation.curves import summarize_runs
        except ImportError:  # evaluation stack not installed
            return
        rd_files = sorted(sweep_dir.glob("*/rd.json"))
        if not rd_files:
            log.warning("sweep %s produced no rd.json files (is callbacks.rd_eval enabled?)", sweep_dir)
            return
        summarize_runs([str(p.parent) for p in rd_files], out_dir=sweep_dir / "rd_summary",
                       group=sweep_dir.name, log_wandb=config.get("logger", {}).get("wandb") is not None)
        print(f"sweep RD summary ({len(rd_files)} runs): {sweep_dir / 'rd_summary'}/rd_table.md, rd.png", flush=True)
