"""Latent overfitting (LOF): per-image test-time optimisation of the latent at encode time (spec msp-and-lof.md §3).

Starting from y = g_a(x) (and z = h_a(|y|) for hyperprior models, optionally optimised too), Adam minimises the
model's own R + lambda*D with hard rounding in the forward pass and straight-through gradients. Because the forward
pass is hard, each iteration's cost *is* the true cost of the current latent: the rate is the model's code length of
the rounded latent (what the entropy coder spends, up to its ~0.1 % overhead) and the distortion is that of the
decoder's clamped reconstruction. The best latent seen is kept (greedy acceptance: never worse than the start); a
NaN/inf stops the loop and falls back to the best so far. The bitstream is then written by the model's normal
``compress_latents`` and read by its normal ``decompress``: the decoder does not change.

Every model with ``encode_latents`` / ``latent_forward`` / ``compress_latents`` works through this one code path.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from dataclasses import asdict
from typing import Any, Callable

import torch
import torch.nn.functional as F
from compressai.ops import compute_padding
from torch import Tensor

from compresslab.evaluation.lof_config import LOFConfig
from compresslab.evaluation.losses import RateDistortionLoss
from compresslab.models.base import CompressLabModel, pad_multiple_of

log = logging.getLogger(__name__)


def supports_lof(model) -> bool:
    """Every registered model has the latent interface; a plain CompressAI model (a reference run) does not."""
    return isinstance(model, CompressLabModel)


def rd_cost(model, latents: dict[str, Tensor], x: Tensor, unpad, lmbda: float, metric: str) -> tuple[Tensor, dict]:
    """The training loss (evaluation.losses) on the cropped-back reconstruction, with every bit counted once: LOF
    minimises what the file costs, so rate weights a model uses in training (the adaptive model's lambda_q, which
    amortises side information over a training crop) are set to 1."""
    out = model.latent_forward(latents)
    out = {**out, "x_hat": F.pad(out["x_hat"], unpad).clamp(0, 1)}
    loss = RateDistortionLoss(lmbda, metric, rate_weights={k: 1.0 for k in out["likelihoods"]})(out, x)
    d = loss["mse_loss"] if metric == "mse" else 1 - loss["ms_ssim_loss"]
    return loss["loss"], {"bpp": float(loss["bpp_loss"].detach()), "distortion": float(d.detach())}


@torch.enable_grad()  # the evaluator runs under no_grad; LOF needs gradients w.r.t. the latents only
def overfit_latents(model, x: Tensor, lmbda: float, cfg: LOFConfig,
                    on_iteration: Callable[[int, float], None] | None = None) -> tuple[dict[str, Tensor], dict]:
    """x: (1, 3, H, W) original image. Returns the best latents (for the padded image) and a report."""
    if not supports_lof(model):
        raise TypeError(f"{type(model).__name__} does not expose encode_latents/latent_forward/compress_latents")
    t0 = time.perf_counter()
    h, w = x.shape[-2:]
    pad, unpad = compute_padding(h, w, min_div=pad_multiple_of(model))
    x_padded = F.pad(x, pad, mode="constant", value=0)
    frozen = [p for p in model.parameters() if p.requires_grad]
    for p in frozen:
        p.requires_grad_(False)
    try:
        with torch.no_grad():
            init = model.encode_latents(x_padded)
        names = [k for k in init if k == "y" or (k == "z" and cfg.optimize_z)]
        latents = {k: v.detach().clone().requires_grad_(k in names) for k, v in init.items()}
        opt = torch.optim.Adam([latents[k] for k in names], lr=cfg.lr)
        gamma = (cfg.lr_end / cfg.lr) ** (1 / max(1, cfg.steps - 1))
        sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma)
        best = {k: v.detach().clone() for k, v in latents.items()}
        best_cost, best_info, first, curve, since, it = math.inf, {}, None, [], 0, 0
        nan_at = None
        for it in range(cfg.steps + 1):
            cost, info = rd_cost(model, latents, x, unpad, lmbda, cfg.metric)
            c = float(cost.detach())
            if not math.isfinite(c):
                nan_at = it
                warnings.warn(f"LOF: non-finite RD cost at iteration {it}; keeping the best latent so far "
                              f"(cost {best_cost:.6g})", RuntimeWarning, stacklevel=2)
                break
            curve.append(c)
            if on_iteration:
                on_iteration(it, c)
            if first is None:
                first = (c, info)
            if c < best_cost:
                best_cost, best_info, since = c, info, 0
                best = {k: v.detach().clone() for k, v in latents.items()}
            else:
                since += 1
            if it == cfg.steps or since >= cfg.patience:
                break
            opt.zero_grad()
            cost.backward()
            opt.step()
            sched.step()
    finally:
        for p in frozen:
            p.requires_grad_(True)
    report = {
        "lof_cost_before": first[0] if first else math.nan, "lof_cost_after": best_cost,
        "lof_bpp_est_before": first[1]["bpp"] if first else math.nan, "lof_bpp_est_after": best_info.get("bpp"),
        "lof_iterations": it, "lof_seconds": time.perf_counter() - t0, "lof_nan_at": nan_at,
        "lof_curve": curve,
    }
    return best, report


def lof_encoder_factory(model, cfg: LOFConfig, lmbda: float, on_curve: Callable[[str, list], None] | None = None):
    """For ``evaluate_model(encode_factory=...)``: returns, per image, an encoder that runs LOF then compresses."""

    def factory(x: Tensor):
        def encode(_x_padded: Tensor) -> dict:
            latents, report = overfit_latents(model, x.unsqueeze(0) if x.dim() == 3 else x, lmbda, cfg)
            with torch.no_grad():
                enc = model.compress_latents(latents)
            enc.setdefault("report", {}).update({k: v for k, v in report.items() if k != "lof_curve"})
            if on_curve:
                on_curve(report)
            return enc

        return encode

    return factory


def config_dict(cfg: LOFConfig) -> dict[str, Any]:
    return asdict(cfg)
