"""Adaptive encoding distributions (Ulhaq & Bajić, ICIP 2024, arXiv 2406.13059): ``model=adaptive``.

Per image the encoder histograms each latent channel (p), compresses the histograms into a small side-information
tensor q (``PdfCodec``), and codes the latent with the decoded estimate p_hat instead of the static entropy
bottleneck's density. Split by concern:

- models/adaptive_stage.py: the stage itself (histogram, side information, p_hat, per-image CDF tables, bit-exact
  p_hat on both sides), shared by every base;
- models/adaptive_factorized.py: the registered model; ``model.base_model=factorized`` (default, the paper's setting)
  puts the stage on y;
- models/adaptive_base.py: ``model.base_model=hyperprior | mbt2018-mean | mbt2018 | cheng2020-*``: the stage on the
  hyper-latent z, y coded as the base codes it (the released code's ``*-pdf`` variants);
- models/adaptive_static.py, models/adaptive_base_static.py: the static controls (one re-fitted PMF, or one per image
  fitted leave-one-out), for y and for z.

Only the base EB's medians (histogram centring) and quantile support (coding support) are used. ``ideal=True``:
p_hat = p and the side information costs nothing: the upper bound the paper plots. Its real bitstream codes the
latent with tables built from p; p itself travels in a string group the evaluator does not count
(``free_string_groups``), so the number is "bits under the true histogram", as in the paper's ideal curve.
"""

from compresslab.models.adaptive_factorized import AdaptiveFactorized
from compresslab.models.adaptive_stage import KODAK_PIXELS
from compresslab.models.adaptive_static import (STATIC_LOO_LABEL, STATIC_TRAIN_LABEL, StaticLOOControl,
                                                StaticRefitControl, fit_static_loo, fit_static_refit, static_label)

__all__ = ["KODAK_PIXELS", "STATIC_LOO_LABEL", "STATIC_TRAIN_LABEL", "AdaptiveFactorized", "StaticLOOControl",
           "StaticRefitControl", "fit_static_loo", "fit_static_refit", "static_label"]
