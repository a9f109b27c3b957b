"""The LightningModule that optimises R + lambda * D for any registered CompressionModel.

Manual optimisation: the network optimizer steps on the RD loss (gradient-clipped), then the auxiliary optimizer
steps on ``model.aux_loss()`` (the entropy bottlenecks' quantiles). Two backward passes per step are how
CompressAI's examples/train.py trains; Lightning's ``manual_backward`` prepares DDP's reducer for each one, so
under DDP the main pass syncs the network gradients and the aux pass syncs the quantile gradients.
"""

from __future__ import annotations

import random
from collections import deque
from typing import Any, Mapping

import lightning.pytorch as pl
import numpy as np
import torch
from compressai.models import CompressionModel
from torch import Tensor, nn

from compresslab.entropy.precision import entropy_models_in_fp32
from compresslab.evaluation.metrics import psnr_from_mse
from compresslab.evaluation.losses import RateDistortionLoss
from compresslab.training.optim import build_optimizers, build_scheduler, step_scheduler
from compresslab.errors import NonFiniteLossError  # noqa: F401 - raised here, imported from here by callers
from compresslab.training.speed import to_memory_format


def rate_point_of(lambdas, lmbda: float, name: str) -> int:
    """The rate point of ``lmbda`` in a variable-rate model's lambdas; ConfigError (one line) when it has none."""
    import math

    from compresslab.errors import ConfigError

    for k, v in enumerate(lambdas):
        if math.isclose(float(v), float(lmbda), rel_tol=1e-6):
            return k
    raise ConfigError(f"model={name}: lambda={lmbda:g} is not one of model.lambdas={list(lambdas)} (it picks the "
                      f"rate point validated and reported as the run's point); set lambda to one of them")


def aux_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Entropy-bottleneck quantiles: trained only by the aux loss (CompressAI's convention: names end in 'quantiles')."""
    return [p for n, p in model.named_parameters() if n.endswith("quantiles") and p.requires_grad]


def net_parameters(model: nn.Module) -> list[nn.Parameter]:
    return [p for n, p in model.named_parameters() if not n.endswith("quantiles") and p.requires_grad]


class RateDistortionModule(pl.LightningModule):
    def __init__(
        self,
        model: CompressionModel,
        lmbda: float,
        loss: Mapping[str, Any],
        optim: Mapping[str, Any],
        model_cfg: Mapping[str, Any] | None = None,
        num_logged_images: int = 4,
        channels_last: bool = False,
        fused_step: str | None = None,
    ):
        super().__init__()
        self.model = model
        entropy_models_in_fp32(model)  # rates stay float32 under trainer.precision=bf16-mixed
        self.lmbda = float(lmbda)
        self.criterion = RateDistortionLoss(self.lmbda, **dict(loss))
        self.optim_cfg = dict(optim)
        # Plain containers only, so checkpoints stay loadable with torch.load(weights_only=True).
        self.model_cfg = dict(model_cfg or {"name": getattr(model, "registry_name", type(model).__name__)})
        if model.rate_lambdas:  # variable rate: validation (and the run's headline point) at lambda's rate point
            model.set_rate_point(rate_point_of(model.rate_lambdas, self.lmbda, self.model_cfg["name"]))
        self.num_logged_images = num_logged_images
        self.channels_last = channels_last  # speed.channels_last: batches to NHWC like the weights
        self.fused_step = fused_step  # speed.compile=step: the torch.compile backend of the one-graph step (fused.py)
        self._fused = None  # built at the first step, after a resumed checkpoint has restored the optimizers' state
        self._finite_pending: deque = deque()  # GPU: (event, pinned flag, record) of steps not yet checked
        self.automatic_optimization = False
        self.save_hyperparameters(
            {"model": self.model_cfg, "lambda": self.lmbda, "loss": dict(loss), "optim": self.optim_cfg}
        )

    # -- optimisation -------------------------------------------------------------------------------------------
    def configure_optimizers(self):
        net_opt, aux_opt = build_optimizers(net_parameters(self.model), aux_parameters(self.model), self.optim_cfg)
        scheduler = build_scheduler(net_opt, self.optim_cfg.get("scheduler"))
        if scheduler is None:
            return [net_opt, aux_opt]
        return [net_opt, aux_opt], [scheduler]

    def forward(self, x: Tensor) -> dict[str, Any]:
        return self.model(x)

    def training_step(self, batch: Tensor | dict, batch_idx: int) -> Tensor:
        if self.fused_step:
            from compresslab.training.fused import fused_training_step

            return fused_training_step(self, batch, batch_idx)
        net_opt, aux_opt = self.optimizers()
        batch = to_memory_format(batch, self.channels_last)
        losses, batch_size = self.model.training_losses(batch, self.criterion)
        loss = losses["loss"]
        self._watch_finite(losses, batch_idx)
        net_opt.zero_grad()
        self.manual_backward(loss)
        clip = self.optim_cfg.get("grad_clip")
        if clip:
            self.clip_gradients(net_opt, gradient_clip_val=float(clip), gradient_clip_algorithm="norm")
        net_opt.step()

        aux_loss = self.model.aux_loss()
        if aux_opt is not None and aux_loss.requires_grad:
            aux_opt.zero_grad()
            self.manual_backward(aux_loss)
            # The raw optimizer: Lightning counts every LightningOptimizer.step() as a global step, and one
            # training step must be one step of trainer.max_steps.
            aux_opt.optimizer.step()
        return self._after_step(losses, aux_loss, net_opt, batch_size)

    def _after_step(self, losses: Mapping[str, Tensor], aux_loss: Tensor, net_opt, batch_size: int) -> Tensor:
        """The scheduler and the train metrics, after both optimizers stepped (eager or fused step)."""
        loss = losses["loss"]
        sched = self.lr_schedulers()
        if sched is not None:
            step_scheduler(sched, self.optim_cfg.get("scheduler"), when="step")

        if self._log_this_step():
            self._log_losses("train", losses, batch_size, on_step=True)
            self.log("train/aux_loss", aux_loss.detach(), on_step=True, on_epoch=False, batch_size=batch_size)
            # A Python float would become a device tensor: on a GPU a blocking host-to-device copy that drains the
            # launch queue. A CPU tensor stays on the host.
            self.log("lr", torch.tensor(float(net_opt.param_groups[0]["lr"])), on_step=True, on_epoch=False)
        return loss.detach()

    def _log_this_step(self) -> bool:
        """Train metrics only on the steps the loggers write (trainer.log_every_n_steps, Lightning's own rule), the
        first and the last: each self.log costs host time on every step, which a GPU step cannot hide."""
        trainer = self._trainer
        if trainer is None:
            return True
        first = trainer.fit_loop.epoch_loop._batches_that_stepped == 0
        last = 0 < trainer.max_steps <= self.global_step
        return first or last or trainer._logger_connector.should_update_logs  # the loggers' own cadence

    # -- non-finite losses ---------------------------------------------------------------------------------------
    def _watch_finite(self, losses: Mapping[str, Tensor], batch_idx: int) -> None:
        """Stop on a NaN/inf loss. On a CPU the check is immediate (the step is never applied). On a GPU, reading the
        flag now would stall the launch queue every step (the framework tax of benchmarks/train_step.py), so the flag
        is copied to pinned host memory without blocking and read once its event has completed: at a later step, or
        (waiting) before any checkpoint and at the end of training."""
        loss = losses["loss"].detach()
        record = (loss, {k: v.detach() for k, v in losses.items() if k != "loss"}, self.global_step,
                  self.current_epoch, batch_idx)
        if loss.device.type != "cuda":
            if not bool(torch.isfinite(loss)):
                raise self._non_finite_error(record, applied=False)
            return
        host = torch.empty((), dtype=torch.bool, pin_memory=True)
        host.copy_(torch.isfinite(loss), non_blocking=True)
        done = torch.cuda.Event()
        done.record()
        self._finite_pending.append((done, host, record))
        self._check_finite(wait=False)

    def _check_finite(self, wait: bool = True) -> None:
        queue = self._finite_pending
        while queue and (wait or queue[0][0].query()):
            done, host, record = queue.popleft()
            done.synchronize()
            if not bool(host):
                queue.clear()
                raise self._non_finite_error(record, applied=True)

    @staticmethod
    def _non_finite_error(record: tuple, applied: bool) -> NonFiniteLossError:
        loss, parts, step, epoch, batch_idx = record
        detail = ", ".join(f"{k}={v.item():.4g}" for k, v in parts.items())
        how = ("the step reached the weights in memory only (GPU: read without stalling, a few steps late)" if applied
               else "the step was not applied")
        return NonFiniteLossError(
            f"non-finite training loss ({loss.item()}) at global step {step} (epoch {epoch}, batch {batch_idx}); "
            f"{how} and no checkpoint was written from it. Resume from the last checkpoint with a lower optim.lr "
            f"or check the input data ({detail}).")

    def validation_step(self, batch: Tensor, batch_idx: int) -> None:
        batch = to_memory_format(batch, self.channels_last)
        out = self.model(batch)
        losses = self.criterion(out, batch)
        self._log_losses("val", losses, batch.shape[0], on_step=False)
        if batch_idx == 0 and self.num_logged_images:
            self._log_reconstructions(batch, out["x_hat"])

    def on_validation_epoch_end(self) -> None:
        sched = self.lr_schedulers()
        if sched is not None and not self.trainer.sanity_checking:
            step_scheduler(sched, self.optim_cfg.get("scheduler"), when="val", metrics=self.trainer.callback_metrics)

    def _log_losses(self, stage: str, losses: Mapping[str, Tensor], batch_size: int, on_step: bool) -> None:
        metrics = {f"{stage}/{k.removesuffix('_loss')}": v.detach() for k, v in losses.items() if k != "loss"}
        if "mse_loss" in losses:
            metrics[f"{stage}/psnr"] = psnr_from_mse(losses["mse_loss"].detach())
        sync = stage == "val"
        self.log_dict(metrics, on_step=on_step, on_epoch=not on_step, batch_size=batch_size, sync_dist=sync)
        # A model whose training step optimises the rate alone (adaptive stage 2 on cached latents: D is constant)
        # logs it as <stage>/rate_loss, never under the RD loss's name, so the two are not compared by mistake.
        name = "rate_loss" if stage == "train" and self.model.training_objective == "rate" else "loss"
        # prog_bar would convert the value to a Python number after every step (a GPU sync); StepProgressBar reads
        # the train metrics from callback_metrics at its own pace instead.
        self.log(f"{stage}/{name}", losses["loss"].detach(), on_step=on_step, on_epoch=not on_step,
                 prog_bar=stage == "val", batch_size=batch_size, sync_dist=sync)

    def _log_reconstructions(self, x: Tensor, x_hat: Tensor) -> None:
        # self.logger is only the first logger (CSV has no images); use whichever logger can take them (W&B)
        log_image = next((lg.log_image for lg in self.loggers if hasattr(lg, "log_image")), None)
        if log_image is None or self.trainer.sanity_checking:
            return
        k = min(self.num_logged_images, x.shape[0])
        # uint8 HWC arrays: wandb 0.30 turns a float tensor in [0, 1] into an all-black PNG
        pairs = [(torch.cat([x[i], x_hat[i].clamp(0, 1)], dim=-1).float() * 255).round().byte().permute(1, 2, 0)
                 .cpu().numpy() for i in range(k)]
        log_image("val/reconstructions", images=pairs, step=self.global_step,
                  caption=["original | reconstruction"] * k)

    # -- checkpoint contents -----------------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._check_finite()  # never write weights a non-finite step has touched
        # RNG state as tensors/ints only, so torch.load(weights_only=True) can read the checkpoint back.
        np_state = np.random.get_state()
        checkpoint["compresslab"] = {
            "format": 1,
            "model": self.model_cfg,
            "lambda": self.lmbda,
            "rng": {
                "torch": torch.get_rng_state(),
                "numpy": (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *map(int, np_state[2:4]),
                          float(np_state[4])),
                "python": _py_state_to_plain(random.getstate()),
            },
        }
        per_rank = self._gather_rng_states()
        if per_rank is not None:  # DDP: every rank draws its own quantisation noise; each gets its own back
            checkpoint["compresslab"]["rng_per_rank"] = per_rank

    def _gather_rng_states(self) -> dict[str, Tensor] | None:
        """The torch (and CUDA) generator states of every rank, stacked (world, ...); None on one process. Called on
        every rank (Lightning builds the checkpoint dict everywhere, rank 0 writes it)."""
        trainer = self._trainer
        if trainer is None or trainer.world_size <= 1:
            return None
        out = {"torch": self.all_gather(torch.get_rng_state().to(self.device)).cpu()}
        if self.device.type == "cuda":
            out["cuda"] = self.all_gather(torch.cuda.get_rng_state(self.device).to(self.device)).cpu()
        return out

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        meta = checkpoint.get("compresslab")
        if not meta:
            return
        saved = meta.get("model", {}).get("name")
        mine = self.model_cfg.get("name")
        if saved and mine and saved != mine:
            raise ValueError(f"checkpoint holds model {saved!r} but this run builds {mine!r}; "
                             f"pass model={saved} or a checkpoint of {mine!r}")
        rng = meta.get("rng")
        if rng:
            torch.set_rng_state(rng["torch"])
            name, keys, pos, has_gauss, cached = rng["numpy"]
            np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
            random.setstate(_py_state_from_plain(rng["python"]))
        per_rank = meta.get("rng_per_rank")
        trainer = self._trainer
        if per_rank and trainer is not None and trainer.world_size == per_rank["torch"].shape[0]:
            rank = trainer.global_rank
            torch.set_rng_state(per_rank["torch"][rank].clone())  # a view of the stack would crash it
            if "cuda" in per_rank and self.device.type == "cuda":
                torch.cuda.set_rng_state(per_rank["cuda"][rank].clone(), self.device)

    def on_train_end(self) -> None:
        self._check_finite()
        _assert_replicas_in_sync(self)


def _py_state_to_plain(state: tuple) -> tuple:
    version, internal, gauss = state
    return (version, torch.tensor(internal, dtype=torch.int64), gauss)


def _py_state_from_plain(state: tuple) -> tuple:
    version, internal, gauss = state
    return (version, tuple(int(v) for v in internal.tolist()), gauss)


def _assert_replicas_in_sync(module: pl.LightningModule) -> None:
    """Under DDP, check every rank ends with identical weights (quantiles included); divergence is a silent bug."""
    if module.trainer.world_size <= 1:
        return
    checksum = torch.stack([p.detach().double().sum() for p in module.model.parameters()]).sum().reshape(1)
    gathered = module.all_gather(checksum.to(module.device)).flatten()
    if not torch.allclose(gathered, gathered[0].expand_as(gathered), rtol=0, atol=1e-6):
        raise RuntimeError(f"DDP replicas diverged: parameter checksums per rank {gathered.tolist()}")
    module.print(f"DDP: parameters identical on {module.trainer.world_size} ranks (checksum {gathered[0].item():.6f})")

