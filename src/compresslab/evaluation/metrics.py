"""One place for the numbers everything reports: bits from likelihoods, bpp, PSNR (training tensors and 8-bit RGB
evaluation), MS-SSIM (differentiable and 8-bit) and its dB form, and the RD cost R + lambda * D in CompressAI's
convention. Used by the training loss, LOF, the evaluator, the sweep objective and the reports."""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import torch
from pytorch_msssim import ms_ssim
from torch import Tensor


DISTORTIONS = ("mse", "msssim")
MSE_SCALE = 255**2  # CompressAI: lambda multiplies the MSE of 0-255 pixels; images are held in [0, 1]


# -- rate ---------------------------------------------------------------------------------------------------------
def likelihood_bits(likelihoods: Mapping[str, Tensor]) -> Tensor:
    """Ideal code length in bits, sum(-log2 p), over every likelihood tensor."""
    return sum((-torch.log2(v)).sum() for v in likelihoods.values())


def likelihood_bits_exact(likelihoods: Mapping[str, Tensor]) -> float:
    """``likelihood_bits`` for reports: in float64, summed by numpy (one thread, a fixed pairwise order), so the
    estimate is the same whatever torch's thread count (its float32 sum changes in the 7th digit between 1 and 2)."""
    import numpy as np

    return float(sum(np.sum(-np.log2(v.detach().double().cpu().numpy())) for v in likelihoods.values()))


def bpp_per_key(likelihoods: Mapping[str, Tensor], num_pixels: int) -> dict[str, Tensor]:
    """Estimated bits per pixel of each likelihood tensor: sum(-log2 p) / (N*H*W)."""
    return {k: torch.log(v).sum() / (-math.log(2) * num_pixels) for k, v in likelihoods.items()}


def bpp_from_bytes(num_bytes: int, num_pixels: int) -> float:
    """Real rate: bytes of the entropy-coded payload over the image's pixels."""
    return num_bytes * 8.0 / num_pixels


# -- distortion ---------------------------------------------------------------------------------------------------
def psnr_from_mse(mse: Tensor, data_range: float = 1.0) -> Tensor:
    return 10 * torch.log10(data_range**2 / mse.clamp_min(1e-12))


def to_8bit(x: Tensor) -> Tensor:
    """[0, 1] float image to the 0-255 integer grid it is stored on (float dtype), as compressai's eval_model."""
    return (x * 255).clamp(0, 255).round()


def psnr_8bit(x: Tensor, x_hat: Tensor) -> float:
    """PSNR on RGB after rounding both images to 8 bits (compressai.utils.eval_model.compute_metrics).

    The squared differences of 8-bit values are integers, summed exactly in float64: the MSE does not depend on how
    many threads sum it in which order (a float32 mean differs in the 7th digit between 1 and 2 threads)."""
    d = (to_8bit(x) - to_8bit(x_hat)).double()
    mse = float((d * d).sum()) / d.numel()
    return float("inf") if mse == 0 else 20 * math.log10(255) - 10 * math.log10(mse)


def msssim(x: Tensor, y: Tensor, data_range: float = 1.0) -> Tensor:
    """MS-SSIM as CompressAI computes it (pytorch_msssim, 5 scales) whenever min(H, W) > 160.

    Smaller training crops cannot hold five scales; for them torchmetrics' MS-SSIM with the first k standard weights
    (renormalised) is used. torchmetrics and pytorch_msssim differ by ~5e-4 on the same images, so the 5-scale path
    keeps pytorch_msssim to match CompressAI's loss and eval_model exactly.
    """
    h, w = x.shape[-2:]
    if min(h, w) > 160:
        return ms_ssim(x, y, data_range=data_range)
    # imported here: torchmetrics (and the matplotlib it pulls in) costs seconds of start-up to `evaluate`
    from torchmetrics.functional.image import multiscale_structural_similarity_index_measure

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


def msssim_8bit(x: Tensor, x_hat: Tensor) -> float:
    """MS-SSIM of the 8-bit images (compressai's eval_model); NaN below 161 px, where 5 scales do not fit."""
    org, rec = to_8bit(x), to_8bit(x_hat)
    if min(org.shape[-2:]) <= 160:
        return float("nan")
    return ms_ssim(org, rec, data_range=255.0).item()


# -- rate-distortion cost -----------------------------------------------------------------------------------------
def rd_cost(bpp, distortion, lmbda: float, metric: str = "mse"):
    """R + lambda * D in CompressAI's convention: D is the MSE of [0, 1] pixels scaled by 255^2 (metric "mse") or
    1 - MS-SSIM ("msssim"). Works on tensors (training, LOF) and floats (reports)."""
    if metric == "mse":
        return bpp + lmbda * MSE_SCALE * distortion
    if metric == "msssim":
        return bpp + lmbda * distortion
    raise ValueError(f"unknown distortion metric {metric!r}; use one of {DISTORTIONS}")


def mean_rd_cost(per_image: Sequence[dict], lmbda: float) -> float:
    """Mean over images of bpp + lambda * 255^2 * MSE (MSE of [0, 1] pixels, from each image's 8-bit PSNR), for
    comparing models or encoders at one lambda from their RD results."""
    return sum(rd_cost(i["bpp"], 10 ** (-i["psnr-rgb"] / 10), lmbda) for i in per_image) / len(per_image)
