"""evaluation/metrics.py: the one definition of rate, PSNR and RD cost, checked against CompressAI."""

import math

import pytest
import torch
from compressai.losses import RateDistortionLoss as CompressAIRDLoss
from compressai.utils.eval_model.__main__ import compute_metrics

from compresslab.evaluation import metrics, quality


def test_rd_cost_is_compressais_loss_for_both_distortions():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 192, 192)
    out = {"x_hat": (x + 0.05 * torch.randn_like(x)).clamp(0, 1),
           "likelihoods": {"y": torch.rand(2, 8, 12, 12).clamp_min(1e-3), "z": torch.rand(2, 4, 3, 3).clamp_min(1e-3)}}
    ref = CompressAIRDLoss(lmbda=0.013)(out, x)
    bpp = sum(metrics.bpp_per_key(out["likelihoods"], 2 * 192 * 192).values())
    assert torch.allclose(bpp, ref["bpp_loss"], rtol=1e-6)
    assert torch.allclose(metrics.likelihood_bits(out["likelihoods"]) / (2 * 192 * 192), ref["bpp_loss"], rtol=1e-6)
    mse = torch.nn.functional.mse_loss(out["x_hat"], x)
    assert torch.allclose(metrics.rd_cost(ref["bpp_loss"], mse, 0.013), ref["loss"], rtol=1e-6)
    ref_ms = CompressAIRDLoss(lmbda=8.73, metric="ms-ssim")(out, x)
    ms = metrics.msssim(out["x_hat"], x)
    assert torch.allclose(metrics.rd_cost(ref_ms["bpp_loss"], 1 - ms, 8.73, "msssim"), ref_ms["loss"], rtol=1e-6)
    with pytest.raises(ValueError, match="unknown distortion metric 'ssim'"):
        metrics.rd_cost(1.0, 0.1, 0.01, "ssim")


def test_8bit_metrics_are_compressais_eval_model():
    torch.manual_seed(1)
    x = torch.rand(1, 3, 200, 232)
    x_hat = (x + 0.03 * torch.randn_like(x)).clamp(0, 1)
    ref = compute_metrics(x, x_hat, 255)
    assert metrics.psnr_8bit(x, x_hat) == pytest.approx(ref["psnr-rgb"], abs=1e-5)  # theirs: float32 log10
    assert metrics.msssim_8bit(x, x_hat) == pytest.approx(ref["ms-ssim-rgb"], abs=1e-7)
    assert math.isnan(metrics.msssim_8bit(x[..., :160, :160], x_hat[..., :160, :160]))  # 5 scales do not fit
    assert quality.msssim_db(0.99) == pytest.approx(20.0)
    # mean_rd_cost recovers each image's MSE from its 8-bit PSNR
    per = [{"bpp": 0.5, "psnr-rgb": 30.0}, {"bpp": 0.3, "psnr-rgb": 20.0}]
    want = (0.5 + 0.01 * 255**2 * 1e-3 + 0.3 + 0.01 * 255**2 * 1e-2) / 2
    assert metrics.mean_rd_cost(per, 0.01) == pytest.approx(want, rel=1e-12)
    assert metrics.bpp_from_bytes(100, 800) == 1.0
