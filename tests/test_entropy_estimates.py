"""Our likelihood helpers (used for rates in MSP training/estimation and in LOF) against CompressAI's own modules."""

import torch
from compressai.entropy_models import EntropyBottleneck, GaussianConditional

from compresslab.entropy.ste import eb_likelihood, gaussian_likelihood


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
