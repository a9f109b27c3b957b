"""Checks and settings a run needs before any work: impossible config combinations (one line each), the sweeper's
objective from a run's own results, and the library noise every run printed."""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import torch
from omegaconf import DictConfig

from compresslab import models
from compresslab.errors import ConfigError


def plain(node):
    from omegaconf import OmegaConf

    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node


OBJECTIVES = ("kodak_rd_cost", "val_loss", "bpp_psnr")


def objective_value(cfg: DictConfig, run_dir: Path, metrics: dict[str, float]):
    """The value a sweeper (Optuna) minimises/maximises, from this run's own results. kodak_rd_cost is the training
    objective bpp + lambda * 255^2 * MSE with real bitstreams on the RD callback's images (evaluation.mean_rd_cost);
    bpp_psnr returns (bpp, PSNR) for a two-objective study."""
    name = cfg.get("objective")
    if not name:
        return None
    if name == "val_loss":
        return float(metrics["val/loss"])
    from compresslab.evaluation.results import RDResult

    mean, rows = RDResult.read(run_dir / "rd.json").headline()  # a variable-rate run: the point at its lambda
    if name == "bpp_psnr":
        return float(mean["bpp"]), float(mean["psnr-rgb"])
    from compresslab.evaluation.metrics import mean_rd_cost

    return float(mean_rd_cost(rows, float(cfg["lambda"])))


def validate_config(cfg: DictConfig) -> None:
    """Combinations that cannot work, caught before any work (run directory, data, model) with one clear line."""
    objective = cfg.get("objective")
    if objective and objective not in OBJECTIVES:
        raise ConfigError(f"objective={objective} is not one of {', '.join(OBJECTIVES)}")
    if objective in ("kodak_rd_cost", "bpp_psnr"):
        rd = cfg.callbacks.get("rd_eval") or {}
        if not rd.get("enabled", False):
            raise ConfigError(f"objective={objective} is measured by the RD callback; "
                              f"set callbacks.rd_eval.enabled=true")
        if objective == "kodak_rd_cost" and cfg.loss.metric != "mse":
            raise ConfigError("objective=kodak_rd_cost is the MSE RD cost; use objective=bpp_psnr or val_loss "
                              "with loss=msssim")
    if cfg.get("optuna_trial") and not int((cfg.callbacks.get("rd_eval") or {}).get("live_every_n_steps") or 0):
        raise ConfigError("a pruned Optuna study (hydra.sweeper.pruner) prunes on the live RD cost; set "
                          "callbacks.rd_eval.live_every_n_steps>0")
    try:
        lam = float(cfg["lambda"])
    except (TypeError, ValueError):
        lam = float("nan")
    if not (math.isfinite(lam) and lam > 0):
        raise ConfigError(f"lambda={cfg.get('lambda')} must be a positive number (the weight of distortion in "
                          f"R + lambda*D), e.g. lambda=0.0067")
    sched = cfg.optim.get("scheduler") or {}
    if sched.get("name") == "cosine" and int(sched.get("warmup_steps") or 0) >= int(sched.get("total_steps") or 0):
        raise ConfigError(f"optim.scheduler.total_steps ({sched.get('total_steps')}) must exceed warmup_steps "
                          f"({sched.get('warmup_steps')}); lower optim.scheduler.warmup_steps for short runs")
    precision = str(cfg.trainer.get("precision", "32-true"))
    if precision not in ("32-true", "32", "bf16-mixed", "bf16-true"):
        raise ConfigError(f"trainer.precision={precision} is not supported: fp16 needs a loss scaler, and the auxiliary "
                          f"optimizer steps outside it; use trainer.precision=bf16-mixed (entropy models stay fp32)")
    if precision == "bf16-true":
        raise ConfigError("trainer.precision=bf16-true would store the entropy models' CDF parameters in bfloat16; "
                          "use trainer.precision=bf16-mixed")
    try:
        cls = models.get_model_class(cfg.model.name)
    except KeyError as e:
        raise ConfigError(str(e.args[0])) from None
    need = cls.min_crop(plain(cfg.model))
    for key in ("patch_size", "val_patch_size"):
        got = cfg.data.get(key)
        if got is not None and int(got) < need:
            raise ConfigError(f"data.{key}={got} is smaller than model={cfg.model.name}'s minimum crop {need} "
                              f"(its latent would vanish); set data.{key}>={need}")
    cls.check_config(plain(cfg.model), int(cfg.trainer.get("max_steps") or 0))
    accelerator = str(cfg.trainer.get("accelerator", "cpu"))
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ConfigError(f"trainer.accelerator={accelerator} but this machine has no usable CUDA GPU "
                          f"(torch.cuda.is_available() is False); use trainer=cpu")


class _DropLightningTip(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "Tip: For seamless cloud logging" not in record.getMessage()


def silence_known_noise() -> None:
    """Messages every run printed that carry no information for our users; real warnings stay."""
    import warnings

    # CSV: we move an earlier metrics.csv aside ourselves (build_loggers), so "will be deleted" is not true here
    warnings.filterwarnings("ignore", message=r"Experiment logs directory .* exists and is not empty")
    # torch/lightning internal API churn, not actionable by a user
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
    # an advertisement for a cloud logger, printed at every fit
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_DropLightningTip())
    # Lightning's hint to use srun is for runs *on* a scheduler; a machine that merely has SLURM installed gets it too
    if "SLURM_JOB_ID" not in os.environ:
        warnings.filterwarnings("ignore", message=r"The `srun` command is available on your system")
    # Lightning gives its loggers a console handler of their own when it is imported before logging is set up; under
    # Hydra (or any app that configured the root logger) every INFO line then printed twice. One route: the root's.
    if logging.getLogger().handlers:
        for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
            lg = logging.getLogger(name)
            for h in list(lg.handlers):
                if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler):
                    lg.removeHandler(h)
            lg.propagate = True
