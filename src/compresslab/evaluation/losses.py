"""Rate-distortion losses in CompressAI's convention.

``mse``:    loss = lambda * 255^2 * MSE + bpp      (CompressAI ``RateDistortionLoss(metric="mse")``)
``msssim``: loss = lambda * (1 - MS-SSIM) + bpp    (CompressAI ``RateDistortionLoss(metric="ms-ssim")``)

so the zoo lambda ladders (0.0018 ... 0.18 and 2.40 ... 220) mean what researchers expect. The rate is split per
likelihood key (``bpp_y``, ``bpp_z`` ...) for logging; ``rate_weights`` scales individual keys (the adaptive model
weights its side information by lambda_q).
"""

from __future__ import annotations

import math
from typing import Mapping

import torch.nn.functional as F
from torch import Tensor, nn

from compresslab.evaluation.metrics import DISTORTIONS, bpp_per_key, msssim, rd_cost

METRICS = DISTORTIONS


class RateDistortionLoss(nn.Module):
    def __init__(self, lmbda: float, metric: str = "mse", rate_weights: Mapping[str, float] | None = None):
        super().__init__()
        if metric not in METRICS:
            raise ValueError(f"unknown distortion metric {metric!r}; use one of {METRICS} (config key loss.metric)")
        if not (lmbda > 0 and math.isfinite(lmbda)):
            raise ValueError(f"lambda must be a positive finite number, got {lmbda!r}")
        self.lmbda = float(lmbda)
        self.metric = metric
        self.rate_weights = dict(rate_weights or {})

    def forward(self, output: Mapping[str, object], target: Tensor) -> dict[str, Tensor]:
        n, _, h, w = target.shape
        num_pixels = n * h * w
        out = self.rate(output, num_pixels)
        x_hat = output["x_hat"].float()  # bf16 under mixed precision: the distortion is measured in float32
        out["mse_loss"] = F.mse_loss(x_hat, target.float())
        if self.metric == "mse":
            distortion = out["mse_loss"]
        else:
            out["ms_ssim_loss"] = msssim(x_hat, target, data_range=1.0)
            distortion = 1 - out["ms_ssim_loss"]
        out["loss"] = rd_cost(out["bpp_loss"], distortion, self.lmbda, self.metric)
        return out

    def rate(self, output: Mapping[str, object], num_pixels: int) -> dict[str, Tensor]:
        """bpp per likelihood key and their weighted sum. A model may return ``rate_weights`` (the adaptive model's
        lambda_q depends on the image size); configured weights take precedence."""
        rates = bpp_per_key(output["likelihoods"], num_pixels)
        weights = {**dict(output.get("rate_weights") or {}), **self.rate_weights}
        out: dict[str, Tensor] = {f"bpp_{k}": v for k, v in rates.items()}
        out["bpp_loss"] = sum(weights.get(k, 1.0) * v for k, v in rates.items())
        return out
