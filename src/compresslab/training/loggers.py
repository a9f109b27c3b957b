"""Logger factories for ``conf/logger/*.yaml`` (``_target_`` entries, built by training.instantiate): Lightning's
CSV and W&B loggers with what a run directory needs around them."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.loggers import CSVLogger, WandbLogger

from compresslab.wandb_mode import wandb_mode

log = logging.getLogger(__name__)


def csv_logger(save_dir: str) -> CSVLogger:
    """metrics.csv in the run directory. Lightning's CSVLogger deletes an existing metrics.csv; a resumed run keeps
    its history beside it (metrics.part<k>.csv)."""
    run_dir = Path(save_dir)
    old = run_dir / "metrics.csv"
    if old.exists() and pl.utilities.rank_zero_only.rank == 0:
        k = 1
        while (run_dir / f"metrics.part{k}.csv").exists():
            k += 1
        old.rename(run_dir / f"metrics.part{k}.csv")
    return CSVLogger(save_dir=str(run_dir), name="", version="")


def wandb_logger(save_dir: str, config: dict[str, Any], project: str = "compresslab", offline: bool = True,
                 name: str | None = None, group: str | None = None, **kwargs: Any) -> WandbLogger:
    """W&B, offline unless asked (no account needed). A resumed run directory reuses its W&B run id, so the curves
    continue in one W&B run."""
    from omegaconf import DictConfig, OmegaConf

    run_dir = Path(save_dir)
    if isinstance(config, DictConfig):
        config = OmegaConf.to_container(config, resolve=True)
    offline = wandb_mode(bool(offline)) != "online"
    id_file = run_dir / "wandb_id.txt"
    run_id = id_file.read_text().strip() if id_file.exists() else None
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
