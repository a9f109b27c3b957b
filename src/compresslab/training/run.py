"""``run(cfg)``: build everything from the composed config and train. Nothing here reads anything but ``cfg``."""

from __future__ import annotations

import atexit
import json
import logging
import math
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import Logger
from lightning.pytorch.strategies import DDPStrategy
from omegaconf import DictConfig, OmegaConf

from compresslab import models
from compresslab.errors import ConfigError
from compresslab.io.checkpoints import AtomicCheckpointIO, load_checkpoint, load_weights, remove_stale_temporaries
from compresslab.training.bases import resolve_base
from compresslab.data.module import ImageDataModule, build_datamodule
from compresslab.training.instantiate import instantiate_all
from compresslab.training.progress import StepProgressBar
from compresslab.training.restart import EpochEndRestart
from compresslab.training.speed import apply_speed_settings
from compresslab.provenance import config_hash, write_run_provenance
from compresslab.training.module import RateDistortionModule
from compresslab.training import runstore, signals, stopping
from compresslab.training.lifecycle import (checkpoint_step, end_process_after_requeue, failed_start, finish_wandb,
                                            finished_result, runstore_callback, stopped_result)
from compresslab.training.checks import OBJECTIVES, objective_value, silence_known_noise, validate_config  # noqa: F401

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
    plugins: list[Any] = [AtomicCheckpointIO()]
    if "SLURM_JOB_ID" in os.environ:  # requeue is ours (training.signals), never from inside a signal handler
        from lightning.pytorch.plugins.environments import SLURMEnvironment

        if SLURMEnvironment.detect():
            plugins.append(SLURMEnvironment(auto_requeue=False))
    trainer = pl.Trainer(**tcfg, strategy=strategy, default_root_dir=str(run_dir), logger=loggers or False,
                         callbacks=callbacks, plugins=plugins,
                         # no bar unless configured (callbacks.rich_progress): log-file runs use ProgressLog lines
                         enable_progress_bar=any(isinstance(c, StepProgressBar) for c in callbacks))
    # Lightning's own SIGTERM handler kills the DDP workers and broadcasts from inside the handler; ours (installed
    # at start) only records the signal. (A private attribute: where it is absent, Lightning keeps its handlers.)
    connector = getattr(trainer, "_signal_connector", None)
    if connector is not None and hasattr(connector, "register_signal_handlers"):
        connector.register_signal_handlers = lambda: None
    return trainer


def prepare_model_config(model_cfg: dict[str, Any], lmbda: float | None = None) -> dict[str, Any]:
    """Models built on a trained base (adaptive) need its checkpoint; their N/M are read from it, and a lambda that
    differs from the base's is reported (the adaptive stage trains rates only: its point on an RD curve is the
    base's operating point, so a different lambda would label it wrongly)."""
    cls = models.get_model_class(model_cfg["name"])
    if cls.requires_base_ckpt:
        base = model_cfg.get("base_ckpt")
        if not base or base == "???":
            raise ConfigError(f"model={model_cfg['name']} needs model.base_ckpt=<trained {cls.base_model_of(model_cfg)} "
                              f"checkpoint>")
        from compresslab.models.base_weights import base_info

        info = base_info(base)
        trained = info.pop("lambda")
        model_cfg = {**model_cfg, **info}
        if lmbda is not None and trained is not None and not math.isclose(float(lmbda), trained, rel_tol=1e-6):
            log.warning("lambda=%g differs from the base checkpoint's lambda %g (model.base_ckpt=%s): the adaptive "
                        "model keeps the base's distortion, so its RD point belongs to lambda %g; pass lambda=%g "
                        "to label it so", float(lmbda), trained, base, trained, trained)
    return model_cfg


def is_rank_zero() -> bool:
    return pl.utilities.rank_zero_only.rank == 0


def run(cfg: DictConfig, run_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Train one model into its run folder: a new one, or the same folder continued (see training.runstore).
    Returns paths and final metrics."""
    previous = signals.install(list(cfg.get("signals") or signals.DEFAULT_SIGNALS))  # first: keep start-up signals
    try:
        result = _run(cfg, run_dir)
    finally:
        signals.restore(previous)
    if result.get("end_process"):  # stopped by the scheduler inside a SLURM job: no result from this process
        end_process_after_requeue()
    return result


def _run(cfg: DictConfig, run_dir: str | os.PathLike | None) -> dict[str, Any]:
    if cfg.get("plugins"):
        plugins = [str(x) for x in cfg.plugins]
        models.load_plugins(plugins)
        # child processes (DDP workers, the data loaders) and later CLI calls on this run's checkpoints see them too
        os.environ["COMPRESSLAB_PLUGINS"] = os.pathsep.join(plugins)
    validate_config(cfg)
    silence_known_noise()
    hydra_dir, group = hydra_run_info()
    run_dir = Path(run_dir or hydra_dir or Path(cfg.paths.output_dir) / "runs" / str(cfg.name)).resolve()
    config = {k: v for k, v in plain(cfg).items() if k != "runtime"}
    decision = runstore.resume_decision(run_dir, config, runstore.resume_policy(cfg.get("resume")),
                                        explicit_ckpt=bool(cfg.get("ckpt_path")))
    if decision.get("changed"):
        log.warning("continuing %s from ckpt_path=%s with another config: %s", run_dir, cfg.ckpt_path,
                    "; ".join(decision["changed"]))
    if decision["action"] == "new_folder":  # resume=never into a folder that holds a run: a sibling of its own
        run_dir = run_dir.with_name(f"{run_dir.name}-{runstore.new_run_id()}")
        log.info("resume=never: %s holds a run; this one starts in %s", run_dir.parent, run_dir)
        decision = {"action": "new"}
    lock = None
    if is_rank_zero():
        runstore.check_writable(run_dir, "run folder")
        lock = runstore.RunLock(run_dir, runstore.id_for(run_dir)).acquire()
        atexit.register(lock.release)
        if lock.replaced:
            log.warning("%s: replaced %s", run_dir, lock.replaced)
    try:
        if decision["action"] == "finished":
            return finished_result(cfg, run_dir, decision)
        return _train(cfg, run_dir, group, config, decision)
    except Exception as e:
        if is_rank_zero():
            failed_start(run_dir, e, new=decision["action"] == "new", keep=group is not None)
        raise
    finally:
        if lock is not None:
            lock.release()


def _train(cfg: DictConfig, run_dir: Path, group: str | None, config: dict[str, Any],
           decision: dict[str, Any]) -> dict[str, Any]:
    rank0 = is_rank_zero()
    if rank0:  # a checkpoint write killed last time left its temporary file
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
    model_cfg = prepare_model_config(plain(cfg.model), float(cfg["lambda"]))
    # config.yaml records the sizes that ran: adaptive's come from its base (models.base_weights.base_info)
    cfg.model.update({k: model_cfg[k] for k in ("N", "M") if k in model_cfg and k in cfg.model})
    record = runstore.RunRecord(run_dir, runstore.id_for(run_dir), {
        "model": model_cfg.get("name"), "N": model_cfg.get("N"), "M": model_cfg.get("M"), "lambda": float(cfg["lambda"]),
        "seed": int(cfg.seed), "loss_metric": str(cfg.loss.metric), "config_hash": config_hash(cfg),
        "max_steps": cfg.trainer.get("max_steps"), "config": config, "group": group,
        "resume_command": runstore.resume_command(run_dir, sys.argv)})
    if rank0:
        write_run_provenance(run_dir, cfg)
        if base:
            (run_dir / "base.json").write_text(json.dumps(base, indent=2))
    model = models.build(model_cfg)
    if cfg.get("init_from"):
        # Weights only: a fine-tune from another lambda starts a fresh schedule, optimizer and step count.
        src = load_checkpoint(cfg.init_from)
        load_weights(model, src, source=str(cfg.init_from))
        log.info("initialised weights from %s", cfg.init_from)
        if rank0:  # provenance: which weights, from where, with which digest
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
    accelerator = str(cfg.trainer.get("accelerator", "auto"))
    on_cpu = accelerator == "cpu" or (accelerator == "auto" and not torch.cuda.is_available())
    speed = apply_speed_settings(model, plain(cfg.get("speed")), cpu=on_cpu)
    module = RateDistortionModule(model, lmbda=float(cfg["lambda"]), loss=plain(cfg.loss), optim=plain(cfg.optim),
                                  model_cfg=model_cfg, channels_last=speed["channels_last"],
                                  fused_step=speed["step"])
    # resume reads through AtomicCheckpointIO.load_checkpoint (weights_only=True on every Lightning we support)
    ckpt_path = cfg.get("ckpt_path") or (str(decision["ckpt"]) if decision.get("ckpt") else None)
    from_step = checkpoint_step(ckpt_path)
    lof = plain(cfg.get("lof")) or {}
    runtime = {"dir": str(run_dir), "group": group, "kodak_dir": str(datamodule.kodak_dir), "model": model_cfg,
               "config_hash": config_hash(cfg), "recipe": recipe_of(), "lof": lof if lof.get("enabled") else None,
               "config": None, "run_id": record.id,
               "resume_step": from_step}
    cfg.runtime = runtime  # ${runtime.*} in the callbacks' and loggers' entries
    cfg.runtime.config = {k: v for k, v in plain(cfg).items() if k != "runtime"}  # the resolved config W&B shows
    loggers = build_loggers(cfg.get("logger"), run_dir)
    stopper = stopping.StopAtStepBoundary(str(run_dir), list(cfg.get("requeue_signals") or ("SIGUSR1",)),
                                         on_save=record.step if rank0 else None,
                                         requeue_margin_s=cfg.get("requeue_margin_s", 30))
    callbacks = [*build_callbacks(cfg.get("callbacks"), plain(cfg.get("optuna_trial"))), stopper,
                 runstore_callback(record if rank0 else None), EpochEndRestart()]
    trainer = build_trainer(cfg.trainer, run_dir, loggers, callbacks)
    if ckpt_path:
        log.info("resuming from %s (step %s, run %s)", ckpt_path, from_step, record.id)
    elif decision["action"] == "resume":
        log.info("%s holds this run but no checkpoint yet: it starts again from step 0", run_dir)
    if rank0:
        record.start(from_step or 0, ckpt_path, changed=decision.get("changed") or None)
        # only now: another rank deciding whether to resume reads run.json's config once config.yaml holds these
        # facts (read before run.json existed, they differed from its own unresolved config: the run was refused)
        resolved = plain(cfg)
        resolved["runtime"].pop("config", None)
        (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(resolved))
    started, t0 = datetime.now(timezone.utc), time.monotonic()
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    except BaseException as e:
        if rank0:
            record.end("interrupted" if isinstance(e, KeyboardInterrupt) else "failed", trainer.global_step,
                       reason=f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}")
        raise
    if stopper.stopped_at is not None or trainer.interrupted:
        return stopped_result(cfg, run_dir, trainer, stopper, record if rank0 else None)
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
    if rank0 and trainer.state.finished:
        segments = record.doc["segments"]
        # what `compresslab.training.bases` looks for when a later run needs this model as its base
        (run_dir / "done.json").write_text(json.dumps({
            "model": model_cfg, "lambda": float(cfg["lambda"]), "loss_metric": str(cfg.loss.metric),
            "global_step": trainer.global_step, "max_steps": cfg.trainer.get("max_steps"),
            "last_ckpt": result["last_ckpt"], "val_loss": result["metrics"].get("val/loss"),
            # this process's fit (its end-of-fit Kodak evaluation included); every segment's in `segments`
            "wall_s": round(time.monotonic() - t0, 1), "started_utc": started.isoformat(timespec="seconds"),
            "resumed_from": ckpt_path or None,
            "total_wall_s": round(sum(s.get("wall_s") or 0 for s in segments[:-1]) + time.monotonic() - t0, 1),
            "segments": segments}, indent=2, default=str))
        rd = runstore.read_json(run_dir / "rd.json") or {}
        point = {k: (rd.get("results") or {}).get(k, [None])[0] for k in ("bpp", "psnr-rgb", "ms-ssim-rgb")}
        record.end("finished", trainer.global_step, rd=point if rd else None)
    # rank 0 wrote rd.json; the sweeper reads the value of the process it launched
    result["objective"] = objective_value(cfg, run_dir, result["metrics"]) if rank0 else None
    if rank0:
        finish_wandb(loggers)
    return result

