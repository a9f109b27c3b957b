"""``run(cfg)``: build everything from the composed config and train. Nothing here reads anything but ``cfg``."""

from __future__ import annotations

import json
import logging
import math
import os
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import Logger, WandbLogger
from lightning.pytorch.strategies import DDPStrategy
from omegaconf import DictConfig, OmegaConf

from compresslab import models
from compresslab.errors import ConfigError
from compresslab.io.checkpoints import AtomicCheckpointIO, load_checkpoint, load_weights, remove_stale_temporaries
from compresslab.training.bases import resolve_base
from compresslab.data.module import ImageDataModule, build_datamodule
from compresslab.training.instantiate import instantiate_all
from compresslab.training.progress import StepProgressBar
from compresslab.training.speed import apply_speed_settings
from compresslab.provenance import config_hash, write_run_provenance
from compresslab.training.module import RateDistortionModule

log = logging.getLogger(__name__)


def hydra_run_info() -> tuple[Path | None, str | None]:
    """(run dir, sweep group) from Hydra when running under it, else (None, None)."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        hc = HydraConfig.get()
    except (ImportError, ValueError):
        return None, None
    group = Path(hc.sweep.dir).name if hc.mode == RunMode.MULTIRUN else None
    return Path(hc.runtime.output_dir), group


def recipe_of() -> str | None:
    """The experiment file a Hydra run was composed with (``experiment=...``), recorded with every result."""
    try:
        from hydra.core.hydra_config import HydraConfig

        return HydraConfig.get().runtime.choices.get("experiment")
    except (ImportError, ValueError):
        return None


def plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node


def build_loggers(section: Any, run_dir: Path) -> list[Logger]:
    """The ``logger:`` section's entries (conf/logger/*.yaml; extra loggers write into the run directory)."""
    spec = plain(section) or {}
    for v in (spec.get("extra") or {}).values():
        if isinstance(v, dict):
            v.setdefault("save_dir", str(run_dir))
    return instantiate_all(spec, "logger")


def build_callbacks(section: Any, trial: dict | None) -> list[Callback]:
    """The ``callbacks:`` section's entries; a trial of the Optuna sweeper with a pruner also gets the pruning
    callback, which reports the RD callback's live points (it wraps that callback, so it is built here)."""
    cbs = instantiate_all(section, "callbacks")
    if trial:
        from compresslab.training.callbacks import OptunaPruning, RDEvaluationCallback

        rd = next((c for c in cbs if isinstance(c, RDEvaluationCallback)), None)
        if rd is None:
            raise ConfigError("hydra.sweeper.pruner needs the RD callback's live points: keep callbacks.rd_eval enabled "
                              "with callbacks.rd_eval.live_every_n_steps > 0")
        cbs.append(OptunaPruning(rd, **trial))
    return cbs


def build_trainer(section: Any, run_dir: Path, loggers, callbacks) -> pl.Trainer:
    tcfg = dict(plain(section))
    strategy = tcfg.pop("strategy", "auto")
    if strategy == "ddp":
        # find_unused_parameters: the quantiles get gradients only from the aux loss, not from the RD loss.
        backend = "gloo" if tcfg.get("accelerator") == "cpu" else None
        strategy = DDPStrategy(find_unused_parameters=True, process_group_backend=backend)
    return pl.Trainer(**tcfg, strategy=strategy, default_root_dir=str(run_dir), logger=loggers or False,
                      callbacks=callbacks, plugins=[AtomicCheckpointIO()],
                      # no bar unless configured (callbacks.rich_progress): log-file runs use ProgressLog lines
                      enable_progress_bar=any(isinstance(c, StepProgressBar) for c in callbacks))


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
    doc = json.loads((run_dir / "rd.json").read_text())
    if name == "bpp_psnr":
        return float(doc["results"]["bpp"][0]), float(doc["results"]["psnr-rgb"][0])
    from compresslab.evaluation.metrics import mean_rd_cost

    return float(mean_rd_cost(doc["per_image"], float(cfg["lambda"])))


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


def prepare_model_config(model_cfg: dict[str, Any], lmbda: float | None = None) -> dict[str, Any]:
    """Models built on a trained base (adaptive) need its checkpoint; their N/M are read from it, and a lambda that
    differs from the base's is reported (the adaptive stage trains rates only: its point on an RD curve is the
    base's operating point, so a different lambda would label it wrongly)."""
    cls = models.get_model_class(model_cfg["name"])
    if cls.requires_base_ckpt:
        base = model_cfg.get("base_ckpt")
        if not base or base == "???":
            raise ConfigError(f"model={model_cfg['name']} needs model.base_ckpt=<trained {cls.base_model} checkpoint>")
        from compresslab.models.base_weights import base_info

        info = base_info(base)
        trained = info.pop("lambda")
        model_cfg = {**model_cfg, **info}
        if lmbda is not None and trained is not None and not math.isclose(float(lmbda), trained, rel_tol=1e-6):
            log.warning("lambda=%g differs from the base checkpoint's lambda %g (model.base_ckpt=%s): the adaptive "
                        "model keeps the base's distortion, so its RD point belongs to lambda %g; pass lambda=%g "
                        "to label it so", float(lmbda), trained, base, trained, trained)
    return model_cfg


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


def run(cfg: DictConfig, run_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Train one model. Returns paths and final metrics."""
    if cfg.get("plugins"):
        plugins = [str(x) for x in cfg.plugins]
        models.load_plugins(plugins)
        # child processes (DDP workers, the data loaders) and later CLI calls on this run's checkpoints see them too
        os.environ["COMPRESSLAB_PLUGINS"] = os.pathsep.join(plugins)
    validate_config(cfg)
    silence_known_noise()
    hydra_dir, group = hydra_run_info()
    run_dir = Path(run_dir or hydra_dir or Path(cfg.paths.output_dir) / "runs" / str(cfg.name)).resolve()
    if pl.utilities.rank_zero_only.rank == 0:  # a checkpoint write killed last time left its temporary file
        for p in remove_stale_temporaries(run_dir / "checkpoints"):
            log.info("removed %s, left by an interrupted checkpoint write", p)
    threads = cfg.get("threads")
    if threads:
        torch.set_num_threads(int(threads))
    base = resolve_base(cfg, run_dir, train=run)  # a model built on a trained base: given, found, downloaded or trained first
    if base:
        cfg.model.base_ckpt = base["base_ckpt"]
        log.info("base model (%s): %s: %s", base["how"], base["base_ckpt"], base["detail"])
    pl.seed_everything(int(cfg.seed), workers=True)
    if pl.utilities.rank_zero_only.rank == 0:
        write_run_provenance(run_dir, cfg)
        if base:
            (run_dir / "base.json").write_text(json.dumps(base, indent=2))

    model_cfg = prepare_model_config(plain(cfg.model), float(cfg["lambda"]))
    model = models.build(model_cfg)
    if cfg.get("init_from"):
        # Weights only: a fine-tune from another lambda starts a fresh schedule, optimizer and step count.
        src = load_checkpoint(cfg.init_from)
        load_weights(model, src, source=str(cfg.init_from))
        log.info("initialised weights from %s", cfg.init_from)
        if pl.utilities.rank_zero_only.rank == 0:  # provenance: which weights, from where, with which digest
            origin = (src.get("compresslab") or {}).get("source") or {"path": str(cfg.init_from)}
            (run_dir / "init_from.json").write_text(json.dumps(origin, indent=2))
    cache = model.latent_cache_spec()
    if cache is not None:
        from compresslab.data.latent_cache import LatentCacheDataModule

        datamodule = LatentCacheDataModule(*cache, **plain(cfg.data))
    else:
        datamodule = build_datamodule(plain(cfg.data))
    # the image folders (layout, lists) are checked now, before W&B and Lightning start: a missing dataset is one
    # line (DataLayoutError), not a traceback after the loggers; the base setup only lists files, and is idempotent
    ImageDataModule.setup(datamodule, "fit")
    speed = apply_speed_settings(model, plain(cfg.get("speed")))
    module = RateDistortionModule(model, lmbda=float(cfg["lambda"]), loss=plain(cfg.loss), optim=plain(cfg.optim),
                                  model_cfg=model_cfg, channels_last=speed["channels_last"])
    lof = plain(cfg.get("lof")) or {}
    runtime = {"dir": str(run_dir), "group": group, "kodak_dir": str(datamodule.kodak_dir), "model": model_cfg,
               "config_hash": config_hash(cfg), "recipe": recipe_of(), "lof": lof if lof.get("enabled") else None,
               "config": None}
    cfg.runtime = runtime  # ${runtime.*} in the callbacks' and loggers' entries
    cfg.runtime.config = {k: v for k, v in plain(cfg).items() if k != "runtime"}  # the resolved config W&B shows
    if pl.utilities.rank_zero_only.rank == 0:  # config.yaml again, now with the run's facts in place of nulls
        resolved = plain(cfg)
        resolved["runtime"].pop("config", None)
        (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(resolved))
    loggers = build_loggers(cfg.get("logger"), run_dir)
    callbacks = build_callbacks(cfg.get("callbacks"), plain(cfg.get("optuna_trial")))
    trainer = build_trainer(cfg.trainer, run_dir, loggers, callbacks)
    # resume reads through AtomicCheckpointIO.load_checkpoint (weights_only=True on every Lightning we support)
    ckpt_path = cfg.get("ckpt_path")
    if not ckpt_path:  # a requeued / resubmitted SLURM job continues where it stopped (cfg.resume)
        from compresslab.training.slurm import resume_checkpoint

        found = resume_checkpoint(run_dir, str(cfg.get("resume") or "never"))
        if found is not None:
            log.info("resuming from %s (resume=%s)", found, cfg.get("resume"))
            ckpt_path = str(found)
    from compresslab.training.slurm import exit_after_requeue

    exit_after_requeue(trainer)  # the warning signal: checkpoint, requeue, end this process (no result)
    started, t0 = datetime.now(timezone.utc), time.monotonic()
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)

    ckpt_cb = next((c for c in callbacks if isinstance(c, ModelCheckpoint)), None)
    if ckpt_cb is not None and ckpt_cb.save_last and ckpt_cb.last_model_path is not None:
        # ModelCheckpoint writes last.ckpt only after a validation; a run that stops between validations
        # (max_steps not a multiple of val_check_interval, max_time) would otherwise leave last.ckpt behind the
        # weights its rd.json was measured on.
        last = run_dir / "checkpoints" / "last.ckpt"
        held = torch.load(last, map_location="cpu", weights_only=True).get("global_step") if last.exists() else None
        if held != trainer.global_step:
            trainer.save_checkpoint(str(last), weights_only=False)  # a full checkpoint: resumable
    result = {
        "run_dir": str(run_dir),
        "global_step": trainer.global_step,
        "last_ckpt": str(run_dir / "checkpoints" / "last.ckpt") if ckpt_cb else None,
        "best_ckpt": ckpt_cb.best_model_path if ckpt_cb else None,
        "metrics": {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1},
    }
    if pl.utilities.rank_zero_only.rank == 0 and not trainer.interrupted and trainer.state.finished:
        # what `compresslab.training.bases` looks for when a later run needs this model as its base
        (run_dir / "done.json").write_text(json.dumps({
            "model": model_cfg, "lambda": float(cfg["lambda"]), "loss_metric": str(cfg.loss.metric),
            "global_step": trainer.global_step, "max_steps": cfg.trainer.get("max_steps"),
            "last_ckpt": result["last_ckpt"],
            # this process's fit, its end-of-fit Kodak evaluation included; a resumed run counts from the resume
            "wall_s": round(time.monotonic() - t0, 1), "started_utc": started.isoformat(timespec="seconds"),
            "resumed_from": ckpt_path or None}, indent=2, default=str))
    # rank 0 wrote rd.json; the sweeper reads the value of the process it launched
    result["objective"] = objective_value(cfg, run_dir, result["metrics"]) \
        if pl.utilities.rank_zero_only.rank == 0 else None
    if pl.utilities.rank_zero_only.rank == 0:
        for lg in loggers:
            if isinstance(lg, WandbLogger):
                lg.experiment.finish()  # flush now: a multirun starts the next W&B run in this process
    return result
