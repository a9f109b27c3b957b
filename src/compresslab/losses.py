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

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from pytorch_msssim import ms_ssim
from torchmetrics.functional.image import multiscale_structural_similarity_index_measure

METRICS = ("mse", "msssim")


def bpp_per_key(likelihoods: Mapping[str, Tensor], num_pixels: int) -> dict[str, Tensor]:
    """Estimated bits per pixel of each likelihood tensor: sum(-log2 p) / (N*H*W)."""
    return {k: torch.log(v).sum() / (-math.log(2) * num_pixels) for k, v in likelihoods.items()}


def psnr_from_mse(mse: Tensor, data_range: float = 1.0) -> Tensor:
    return 10 * torch.log10(data_range**2 / mse.clamp_min(1e-12))


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
            distortion = 255**2 * out["mse_loss"]
        else:
            out["ms_ssim_loss"] = msssim(x_hat, target, data_range=1.0)
            distortion = 1 - out["ms_ssim_loss"]
        out["loss"] = self.lmbda * distortion + out["bpp_loss"]
        return out

    def rate(self, output: Mapping[str, object], num_pixels: int) -> dict[str, Tensor]:
        """bpp per likelihood key and their weighted sum. A model may return ``rate_weights`` (the adaptive model's
        lambda_q depends on the image size); configured weights take precedence."""
        rates = bpp_per_key(output["likelihoods"], num_pixels)
        weights = {**dict(output.get("rate_weights") or {}), **self.rate_weights}
        out: dict[str, Tensor] = {f"bpp_{k}": v for k, v in rates.items()}
        out["bpp_loss"] = sum(weights.get(k, 1.0) * v for k, v in rates.items())
        return out


def msssim(x: Tensor, y: Tensor, data_range: float = 1.0) -> Tensor:
    """MS-SSIM as CompressAI computes it (pytorch_msssim, 5 scales) whenever min(H, W) > 160.

    Smaller training crops cannot hold five scales; for them torchmetrics' MS-SSIM with the first k standard weights
    (renormalised) is used. torchmetrics and pytorch_msssim differ by ~5e-4 on the same images, so the 5-scale path
    keeps pytorch_msssim to match CompressAI's loss and eval_model exactly.
    """
    h, w = x.shape[-2:]
    if min(h, w) > 160:
        return ms_ssim(x, y, data_range=data_range)
    return multiscale_structural_similarity_index_measure(x, y, data_range=data_range, betas=_msssim_betas(h, w))


def _msssim_betas(h: int, w: int) -> tuple[float, ...]:
    betas = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
    k = 5
    while k > 1 and min(h, w) <= (11 - 1) * 2 ** (k - 1):
        k -= 1
    if k == 5:
        return betas
    sub = betas[:k]
    s = sum(sub)
    return tuple(b / s for b in sub)
