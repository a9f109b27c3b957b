"""Logger factories for ``conf/logger/*.yaml`` (``_target_`` entries, built by training.instantiate): Lightning's
CSV and W&B loggers with what a run directory needs around them."""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.loggers import CSVLogger, WandbLogger

from compresslab.wandb_mode import wandb_mode

log = logging.getLogger(__name__)


def csv_logger(save_dir: str, resume_step: int | None = None) -> CSVLogger:
    """metrics.csv in the run directory, one file for the whole run. Lightning's CSVLogger deletes an existing
    metrics.csv; a continued run keeps it: rows logged after the checkpoint it resumes from (a killed run trained on
    past its last save) are dropped, since the continued run logs those steps again, so no step is there twice."""
    run_dir = Path(save_dir)
    old = run_dir / "metrics.csv"
    kept = run_dir / ".metrics.kept.csv"
    rank0 = pl.utilities.rank_zero_only.rank == 0
    if rank0 and old.exists():
        if resume_step is None:  # a start from step 0 in a folder with history: keep the history beside it
            k = 1
            while (run_dir / f"metrics.part{k}.csv").exists():
                k += 1
            old.rename(run_dir / f"metrics.part{k}.csv")
        else:
            old.rename(kept)
    logger = CSVLogger(save_dir=str(run_dir), name="", version="")
    if rank0 and kept.exists():
        writer = logger.experiment  # created now (lazily it would delete the metrics.csv written back below)
        with kept.open(newline="") as f:
            reader = csv.DictReader(f)
            fields = list(reader.fieldnames or [])
            rows = [r for r in reader if not r.get("step") or int(float(r["step"])) < int(resume_step)]
        with old.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=sorted(fields))
            w.writeheader()
            w.writerows(rows)
        kept.unlink()
        writer.metrics_keys = sorted(fields)  # appended rows use this header; new keys rewrite it
    return logger


def wandb_logger(save_dir: str, config: dict[str, Any], project: str = "compresslab", offline: bool = True,
                 name: str | None = None, group: str | None = None, run_id: str | None = None,
                 **kwargs: Any) -> WandbLogger:
    """W&B, offline unless asked (no account needed). A resumed run directory reuses its W&B run id, so the curves
    continue in one W&B run."""
    from omegaconf import DictConfig, OmegaConf

    run_dir = Path(save_dir)
    if isinstance(config, DictConfig):
        config = OmegaConf.to_container(config, resolve=True)
    offline = wandb_mode(bool(offline)) != "online"
    id_file = run_dir / "wandb_id.txt"
    run_id = id_file.read_text().strip() if id_file.exists() else run_id  # a folder from before run ids keeps its own
    logger = WandbLogger(save_dir=str(run_dir), offline=offline, id=run_id, resume="allow" if run_id else None,
                         name=name, group=group, project=project, config=config, **kwargs)
    # Lightning always passes anonymous=None, which this wandb version answers with a deprecation warning per run
    logger._wandb_init.pop("anonymous", None)
    if pl.utilities.rank_zero_only.rank == 0:
        try:
            id_file.write_text(logger.experiment.id)
        except Exception as e:  # noqa: BLE001 - logging must never stop training
            log.warning("could not start W&B: %s", e)
    return logger
