"""Lightning callbacks that call into ``evaluation/``."""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_only

from compresslab.rd.anchors import AnchorError, load_anchor
from compresslab.rd.bdrate import rate_change_at_equal_quality
from compresslab.evaluation.evaluator import METRIC_KEYS, default_workers, evaluate_model, list_eval_images
from compresslab.evaluation.lof_config import LOFConfig
from compresslab.evaluation.metrics import mean_rd_cost
from compresslab.evaluation.results import RDMeta, evaluate
from compresslab.models.registry import get_model_class
from compresslab.training.stopping import stopped_on_signal

log = logging.getLogger(__name__)


class RDEvaluationCallback(Callback):
    """Real-bitstream evaluation on Kodak every ``eval_every_n_epochs`` epochs (0 = never) and at the end of fit.

    Writes ``rd.json`` (CompressAI result format + per-image rows + metadata) in the run directory and logs the
    means, the real/estimated bpp ratio and the single-point rate change vs the anchor at equal PSNR.
    """

    def __init__(self, run_dir: str | Path, kodak_dir: str | Path, lmbda: float, model_cfg: dict[str, Any],
                 config_hash: str, eval_every_n_epochs: int = 0, max_images: int | None = None, crop: int | None = None,
                 anchor: str | None = "kodak/vtm", enabled: bool = True, lof: dict | None = None,
                 loss_metric: str = "mse", also_compare: list[str] | None = None, plot: bool = False,
                 live_every_n_steps: int = 0, live_images: int = 3, live_crop: int | None = 256,
                 recipe: str | None = None, workers: int | None = None):
        self.run_dir = Path(run_dir)
        self.kodak_dir = Path(kodak_dir)
        self.lmbda = lmbda
        self.model_cfg = model_cfg
        self.config_hash = config_hash
        self.every_n_epochs = int(eval_every_n_epochs or 0)
        self.max_images = max_images
        self.crop = crop
        self.anchor = anchor
        self.lof = lof
        self.loss_metric = loss_metric
        self.also_compare = list(also_compare or [])  # more anchors for the single-point rate change (e.g. JPEG)
        self.plot = plot                             # draw this run's point against the anchors (rd.png)
        self.live_every = int(live_every_n_steps or 0)  # live RD view: a small fixed subset every N steps
        self.live_images = int(live_images)
        self.live_crop = live_crop
        self.live_points: list[dict[str, Any]] = []
        self.recipe = recipe                         # the experiment file the run was composed with (provenance)
        self.workers = workers                       # images coded at once in worker processes (None: default_workers)

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        list_eval_images(self.kodak_dir, self.max_images)  # fail before training, not after hours of it

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch,
                           batch_idx: int) -> None:
        if self.live_every and trainer.global_step % self.live_every == 0:
            self.evaluate_live(trainer, pl_module)

    @rank_zero_only
    def evaluate_live(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, Any]:
        """Real bitstreams on the first ``live_images`` Kodak images (centre-cropped to ``live_crop``): one point
        of the run's trajectory in the RD plane, appended to <run>/rd_live.jsonl, logged to every logger
        (``kodak_live/*``) and, for W&B, drawn as a native scatter against the anchor curve with a per-image table."""
        files = list_eval_images(self.kodak_dir, self.live_images)
        with coding_on_cpu(pl_module.model):
            result = evaluate_model(pl_module.model, files, crop=self.live_crop)
        point = {"step": trainer.global_step, **{k: v for k, v in result["mean"].items() if k in METRIC_KEYS},
                 "images": len(files), "crop": self.live_crop}
        if self.loss_metric == "mse":  # the training objective on the live subset: what a sweep's pruner compares
            point["rd_cost"] = mean_rd_cost(result["per_image"], self.lmbda)
        self.live_points.append(point)
        with (self.run_dir / "rd_live.jsonl").open("a") as f:
            f.write(json.dumps(point) + "\n")
        metrics = {f"kodak_live/{k}": v for k, v in point.items() if k in METRIC_KEYS or k == "rd_cost"}
        for lg in trainer.loggers:
            lg.log_metrics(metrics, step=trainer.global_step)
            if hasattr(lg, "log_table"):  # W&B
                self._log_live_wandb(lg, result["per_image"], trainer.global_step)
        log.info("live RD (step %d, %d images, real bitstreams): %.4f bpp, %.2f dB", trainer.global_step,
                 len(files), point["bpp"], point["psnr-rgb"])
        return point

    def _log_live_wandb(self, logger, per_image: list[dict], step: int) -> None:
        import wandb

        rows = live_scatter_rows(self.live_points, self.anchor)
        table = wandb.Table(columns=["curve", "bpp", "psnr-rgb", "step"], data=rows)
        logger.experiment.log({"kodak_live/rd": wandb.plot.scatter(table, "bpp", "psnr-rgb",
                                                                   title="live RD: this run vs the anchor"),
                               "kodak_live/per_image": wandb.Table(
                                   columns=["image", "bpp", "psnr-rgb", "bpp_est"],
                                   data=[[r["name"], r["bpp"], r["psnr-rgb"], r["bpp_est"]] for r in per_image]),
                               "trainer/global_step": step})

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.every_n_epochs and (trainer.current_epoch + 1) % self.every_n_epochs == 0 \
                and not stopped_on_signal(trainer):
            self.evaluate(trainer, pl_module)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not stopped_on_signal(trainer):  # an interrupted run has no result yet: its continuation will
            self.evaluate(trainer, pl_module)

    @rank_zero_only
    def evaluate(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, Any]:
        doc = self._evaluate(trainer, pl_module, lof=False)
        if self.lof:
            self._evaluate(trainer, pl_module, lof=True)
        return doc

    def _evaluate(self, trainer: pl.Trainer, pl_module: pl.LightningModule, lof: bool) -> dict[str, Any]:
        model = pl_module.model
        files = list_eval_images(self.kodak_dir, self.max_images)
        meta = RDMeta(model=self.model_cfg, lmbda=self.lmbda, step=trainer.global_step, loss_metric=self.loss_metric,
                      dataset="kodak", image_source=portable_path(self.kodak_dir), crop=self.crop,
                      run_dir=portable_path(self.run_dir), config_hash=self.config_hash, recipe=self.recipe,
                      extra={"epoch": trainer.current_epoch})
        label = get_model_class(self.model_cfg["name"]).curve_label(self.model_cfg)
        if label != self.model_cfg["name"]:  # a variant's points (the oracle bound) form their own curve
            meta.label = label
        with coding_on_cpu(model):
            rd = evaluate(model, files, meta, lof=LOFConfig.from_mapping(self.lof) if lof else None, progress=True,
                          workers=self.workers or default_workers())
        mean, rows = rd.headline()  # a variable-rate run: the point at its lambda (rd.json holds one per lambda)
        changes: dict[str, float | None] = {}
        for name in [a for a in [self.anchor, *self.also_compare] if a]:
            try:
                a = load_anchor(name)
                changes[name] = rate_change_at_equal_quality(*a.curve(), mean["bpp"], mean["psnr-rgb"])
            except AnchorError as e:
                log.warning("anchor comparison skipped: %s", e)
        if self.anchor in changes:
            meta.extra.update(rate_change_vs_anchor=changes[self.anchor], anchor=self.anchor)
        meta.extra["rate_change_vs"] = changes
        out_dir = self.run_dir / "lof" if lof else self.run_dir
        rd.write(out_dir / "rd.json")
        doc = rd.to_json()
        prefix = "kodak_lof" if lof else "kodak"
        # measurements only (the mean image height/width is not a metric), and one rate change per compared anchor
        metrics = {f"{prefix}/{k}": v for k, v in mean.items() if k in METRIC_KEYS}
        if self.loss_metric == "mse":  # the objective an external sweeper (W&B) minimises: the sweep's RD cost
            metrics[f"{prefix}/rd_cost"] = mean_rd_cost(rows, self.lmbda)
        for anchor_name, change in changes.items():
            if change is not None:
                metrics[f"{prefix}/rate_change_pct_vs_{anchor_name.replace('/', '_')}"] = change
        for lg in trainer.loggers:
            lg.log_metrics(metrics, step=trainer.global_step)
        if len(rd.results["bpp"]) > 1:
            print(f"variable rate: {len(rd.results['bpp'])} rate points (lambdas {rd.meta.extra['lambdas']}): "
                  + ", ".join(f"{b:.4f} bpp/{p:.2f} dB" for b, p in zip(rd.results["bpp"], rd.results["psnr-rgb"])))
        change_txt = "; ".join(f"{c:+.1f} % rate vs {n} at equal PSNR" if c is not None else
                               f"PSNR outside the range of {n}" for n, c in changes.items())
        print(f"Kodak{' with LOF' if lof else ''} ({len(files)} images, real bitstreams): {mean['bpp']:.4f} bpp, "
              f"{mean['psnr-rgb']:.2f} dB, real/estimated bpp {mean['bpp_ratio']:.4f}; {change_txt} -> "
              f"{out_dir / 'rd.json'}")
        if "z_share" in meta.extra:  # the adaptive stage on a base's z: how much of the file it codes
            print(f"z (coded by the adaptive stage) is {100 * meta.extra['z_share']:.2f} % of the bits, its side "
                  f"information {100 * meta.extra['side_share']:.2f} %; y (the base's) the rest")
        if self.plot and trainer.is_global_zero:
            from compresslab.rd.curves import summarize_runs

            try:
                summarize_runs([str(out_dir / "rd.json")], out_dir=out_dir / "rd_plot", anchor=self.anchor)
                print(f"RD plot against the anchors: {out_dir / 'rd_plot' / 'rd.png'}")
            except Exception as e:  # noqa: BLE001 - a plot must never lose the evaluation
                log.warning("RD plot skipped: %s", e)
        return doc


class OptunaPruning(Callback):
    """Pruning on live RD, for a job launched by CompressLab's Optuna sweeper (hydra/sweeper=optuna with a
    pruner): every live real-bitstream point of the RD callback (``callbacks.rd_eval.live_every_n_steps``) is
    reported to the trial as its RD cost at that step (``trial.report``), and when the study's pruner (the
    sweeper stores its config in the study's user attribute ``pruner``) says the trial is hopeless, training stops
    at that step, the trial's user attribute ``pruned_at_step`` is set, and the job ends normally (its final RD
    evaluation still runs), after which the sweeper tells the trial PRUNED."""

    def __init__(self, rd: RDEvaluationCallback, study_name: str, storage: str, number: int) -> None:
        self.rd = rd
        self.study_name, self.storage, self.number = study_name, storage, int(number)
        self.trial = None
        self.reported = 0

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        import optuna
        from hydra.utils import instantiate

        if not trainer.is_global_zero:
            return
        storage = optuna.storages.RDBStorage(self.storage)
        study_id = storage.get_study_id_from_name(self.study_name)
        spec = storage.get_study_user_attrs(study_id).get("pruner")
        study = optuna.load_study(study_name=self.study_name, storage=storage,
                                  pruner=instantiate(spec) if spec else None)
        self.trial = optuna.trial.Trial(study, storage.get_trial_id_from_study_id_trial_number(study_id, self.number))

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch,
                           batch_idx: int) -> None:
        points = self.rd.live_points
        if self.trial is None or len(points) == self.reported:
            return
        self.reported = len(points)
        point = points[-1]
        if "rd_cost" not in point:
            return
        self.trial.report(float(point["rd_cost"]), int(point["step"]))
        if self.trial.should_prune():
            self.trial.set_user_attr("pruned_at_step", int(point["step"]))
            log.info("Optuna trial %d pruned at step %d (live RD cost %.4f)", self.number, point["step"],
                     point["rd_cost"])
            trainer.should_stop = True


@contextlib.contextmanager
def coding_on_cpu(model):
    """Entropy coding runs on the CPU (a fixed device also keeps the tables deterministic); the model goes back to its
    device and train/eval mode afterwards, whatever happens."""
    was_training, device = model.training, next(model.parameters()).device
    model.cpu()
    try:
        yield model
    finally:
        model.to(device)
        model.train(was_training)


def live_scatter_rows(points: list[dict[str, Any]], anchor: str | None) -> list[list[Any]]:
    """Rows (curve, bpp, PSNR, step) for the live RD scatter: the run's points so far and the anchor's points up to
    twice the run's highest rate (its low-rate end is where a training run travels; the rest would flatten the view).
    The live points are on a cropped subset, so they are a trajectory, not a number to compare with the anchor."""
    rows = [["this run (live subset)", p["bpp"], p["psnr-rgb"], p["step"]] for p in points]
    if anchor and points:
        try:
            rates, psnrs = load_anchor(anchor).curve()
            top = 2 * max(p["bpp"] for p in points)
            rows += [[anchor, r, q, None] for r, q in zip(rates, psnrs) if r <= top]
        except AnchorError as e:
            log.warning("live RD view without the anchor: %s", e)
    return rows


def portable_path(path: str | Path) -> str:
    """A path as results record it: relative to the working directory when it lies below it (so a result folder
    committed from a checkout names no machine path), absolute otherwise."""
    p = Path(path).resolve()
    try:
        return str(p.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(p)
