"""Our likelihood helpers (used for rates in MSP training/estimation and in LOF) against CompressAI's own modules."""

import pytest
import torch
from compressai.models.base import get_scale_table
from compressai.entropy_models import EntropyBottleneck, GaussianConditional

from compresslab.entropy.ste import coded_gaussian_likelihood, coder_scales, eb_likelihood, gaussian_likelihood


def test_gaussian_likelihood_matches_compressai_including_scales_below_the_bound():
    torch.manual_seed(0)
    gc = GaussianConditional(None).eval()
    means = torch.randn(2, 8, 6, 6)
    y = torch.randn(2, 8, 6, 6) * 3
    y_hat = (y - means).round() + means
    scales = torch.rand(2, 8, 6, 6) * 2
    scales[:, :4] = 0.01  # far below the 0.11 the coder's scale table starts at
    _, ref = gc(y, scales, means)  # eval mode: dequantize, lower-bound the scales, likelihood floor
    ours = gaussian_likelihood(gc, y_hat, scales, means)
    torch.testing.assert_close(ours, ref)


def test_eb_likelihood_matches_compressai():
    torch.manual_seed(0)
    eb = EntropyBottleneck(8).eval()
    y = torch.randn(2, 8, 5, 7) * 4
    y_hat, ref = eb(y)
    torch.testing.assert_close(eb_likelihood(eb, y_hat), ref)


def test_coder_scales_pick_the_table_entry_the_coder_indexes():
    gc = GaussianConditional(None)
    before = coder_scales(gc, torch.tensor([0.5]))  # before update(): the table update() installs
    gc.update_scale_table(get_scale_table())
    gc.update()
    torch.manual_seed(0)
    scales = torch.cat([torch.rand(500) * 300, torch.tensor([0.0, 0.11, 0.05, 256.0, 1e4])]).requires_grad_()
    picked = coder_scales(gc, scales)
    torch.testing.assert_close(picked.detach(), gc.scale_table[gc.build_indexes(scales.detach()).long()])
    assert torch.equal(before, coder_scales(gc, torch.tensor([0.5])))
    picked.sum().backward()  # straight-through above the 0.11 bound
    assert torch.all(scales.grad[scales.detach() > 0.12] == 1)


@pytest.mark.parametrize("spread,raw_off", [(1.15, lambda r: r < 0.993), (1.0, lambda r: r > 1.003)],
                         ids=["over-confident", "calibrated"])
def test_estimate_with_coder_scales_matches_the_rans_string(spread, raw_off):
    """Small scales (most MSP/hyperprior elements at these rates). Over-confident model (true spread 15 % above the
    prediction, the MSP case): the raw-scale estimate claims more bits than CompressAI's coder writes; calibrated:
    fewer (the table rounds scales up). The coder-scale estimate is within 0.3 % of the string in both."""
    torch.manual_seed(0)
    gc = GaussianConditional(None).eval()
    gc.update_scale_table(get_scale_table())
    gc.update()
    predicted = torch.rand(1, 16, 64, 64) * 0.5 + 0.11
    means = torch.randn(1, 16, 64, 64)
    y = means + torch.randn_like(means) * predicted * spread
    y_hat = (y - means).round() + means
    real = 8 * len(gc.compress(y, gc.build_indexes(predicted), means)[0])
    raw = -torch.log2(gaussian_likelihood(gc, y_hat, predicted, means)).sum().item()
    coded = -torch.log2(coded_gaussian_likelihood(gc, y_hat, predicted, means)).sum().item()
    assert raw_off(real / raw), real / raw
    assert 0.998 < real / coded < 1.003, real / coded
    # a surprising symbol under the smallest scale: the coder spends about precision bits, not -log2(1e-9)
    surprise = torch.tensor([[[[3.0]]]])
    s = torch.tensor([[[[0.11]]]])
    assert 29 < -torch.log2(gaussian_likelihood(gc, surprise, s)).item()
    assert -torch.log2(coded_gaussian_likelihood(gc, surprise, s)).item() == gc.entropy_coder_precision
