"""CompressAI's variable-rate models (``bmshj2018-hyperprior-vbr``, ``mbt2018-mean-vbr``; Kamisli, Racapé and Choi,
DCC 2024) as CompressLab models: one set of weights, one rate point per lambda of ``model.lambdas``.

A rate point k is CompressAI's quality index ``s``: y is coded as ``y * Gain[k]`` with scales and means times
``Gain[k]``, and reconstructed with learned quantisation offsets (``QuantABCD``). ``compress_latents``/``decompress``
are CompressAI's stage-2 ``compress``/``decompress`` bodies from the latents on (its strings byte for byte, tested);
the rate point in use is ``rate_point`` (``set_rate_point``), which evaluation steps through and a .clab header
records. Training draws k uniformly per batch and weights the distortion with ``lambdas[k]`` (``training_losses``),
as CompressAI's VBR training does with its own lambda list; ``Gain`` starts at sqrt(lambda_k / max lambda), the
spacing of CompressAI's default gains for its default lambdas, and is not trained (CompressAI's forward detaches it).
CompressAI's variable-rate hyper-latent bottleneck (``vr_entbttlnck``) and mbt2018-vbr (serial context) are not
adapted: refused in compressai_models.refusal.
"""

from __future__ import annotations

import copy
import math
from typing import Any, Mapping, Sequence

import torch

from compresslab.errors import ConfigError
from compresslab.entropy.ste import coded_gaussian_likelihood, eb_likelihood, ste_round
from compresslab.models.compressai_adapters import _Adapter

# CompressAI's ScaleHyperpriorVbr.lmbda: its default rate points
DEFAULT_LAMBDAS = (0.0018, 0.0035, 0.0067, 0.0130, 0.025, 0.0483, 0.0932, 0.18)


def check_lambdas(arch: str, lambdas: Any) -> tuple[float, ...]:
    """model.lambdas as a tuple, or ConfigError (one line): at least two, positive, finite, strictly increasing
    (rate point k is the k-th lambda, so a curve's points come in rate order)."""
    try:
        lam = tuple(float(v) for v in lambdas)
    except (TypeError, ValueError):
        raise ConfigError(f"model={arch}: model.lambdas must be a list of numbers, got {lambdas!r}") from None
    if len(lam) < 2 or not all(v > 0 and math.isfinite(v) for v in lam) or any(b <= a for a, b in zip(lam, lam[1:])):
        raise ConfigError(f"model={arch}: model.lambdas={list(lam)} must hold at least two positive lambdas in "
                          f"increasing order (one rate point each), e.g. model.lambdas=[0.0018,0.0067,0.025]")
    return lam


class VbrAdapter(_Adapter):
    """Mixin over ``ScaleHyperpriorVbr`` / ``MeanScaleHyperpriorVbr`` (same state-dict keys; ``Gain`` has one
    entry per lambda)."""

    rate_point: int = 0

    def _init_rate(self, lambdas: Sequence[float]) -> None:
        lam = tuple(float(v) for v in lambdas)
        self.rate_lambdas = lam
        self.lmbda, self.levels = list(lam), len(lam)  # CompressAI's own attributes (its compress asserts on levels)
        self.Gain = torch.nn.Parameter(torch.tensor([math.sqrt(v / lam[-1]) for v in lam]), requires_grad=True)
        self.rate_point = len(lam) - 1

    def set_rate_point(self, k: int) -> None:
        if not 0 <= int(k) < len(self.rate_lambdas):
            raise ValueError(f"rate point {k} does not exist: this model has {len(self.rate_lambdas)} "
                             f"(0..{len(self.rate_lambdas) - 1}, lambdas {list(self.rate_lambdas)})")
        self.rate_point = int(k)

    @property
    def _mean_scale(self) -> bool:
        from compressai.models import MeanScaleHyperprior

        return isinstance(self, MeanScaleHyperprior)

    def _scale(self) -> torch.Tensor:
        return torch.abs(self.Gain[self.rate_point]).detach()  # as CompressAI's compress/decompress

    def _params(self, z_hat):
        """(scales, means) of y before the gain (means 0 for the scale hyperprior)."""
        p = self.h_s(z_hat)
        if self._mean_scale:
            return p.chunk(2, 1)
        return p, torch.zeros_like(p)

    def _offsets(self, q: torch.Tensor, scales: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """CompressAI's reconstruction offsets of the quantised |y * gain| (0 where it is 0)."""
        stdev = self.gaussian_conditional.lower_bound_scale(scales * scale).unsqueeze(4)
        off = -self.QuantABCD(torch.cat((stdev, scale.expand(stdev.shape)), dim=4)).squeeze(4)
        return torch.where(q.abs() < 0.0001, torch.zeros_like(off), off)

    def _reconstruct(self, q, scales, means, scale):
        # times 1/scale, not divided by scale: CompressAI's arithmetic, so x_hat equals its decoder's bit for bit
        return torch.sign(q) * (q.abs() + self._offsets(q, scales, scale)) * (1.0 / scale) + means

    def forward(self, x):
        if self.training:  # CompressAI's stage-2 training path at the current rate point
            return super(_Adapter, self).forward(x, stage=2, s=self.rate_point)
        return self.latent_forward(self.encode_latents(x))

    def training_losses(self, batch, criterion):
        """One rate point per batch, drawn uniformly (the global RNG Lightning seeds), its lambda in the loss."""
        k = int(torch.randint(len(self.rate_lambdas), ()).item())
        keep, self.rate_point = self.rate_point, k
        try:
            out = self(batch)
        finally:
            self.rate_point = keep
        crit = copy.copy(criterion)  # the run's loss (metric, rate weights) with this rate point's lambda
        crit.lmbda = self.rate_lambdas[k]
        return crit(out, batch), batch.shape[0]

    def encode_latents(self, x):
        y = self.g_a(x)
        return {"y": y, "z": self.h_a(y if self._mean_scale else y.abs())}

    def latent_forward(self, latents):
        eb, gc, scale = self.entropy_bottleneck, self.gaussian_conditional, self._scale()
        z_hat = ste_round(latents["z"], eb._get_medians())
        scales, means = self._params(z_hat)
        q = ste_round((latents["y"] - means) * scale)
        return {"x_hat": self.g_s(self._reconstruct(q, scales, means, scale)), "likelihoods": {
            "y": coded_gaussian_likelihood(gc, q, scales * scale), "z": eb_likelihood(eb, z_hat)}}

    def compress_latents(self, latents):
        y, z = latents["y"], latents["z"]
        eb, gc, scale = self.entropy_bottleneck, self.gaussian_conditional, self._scale()
        z_strings = eb.compress(z)
        z_hat = eb.decompress(z_strings, z.size()[-2:])
        scales, means = self._params(z_hat)
        m = means * scale if self._mean_scale else None
        y_strings = gc.compress(y * scale, gc.build_indexes(scales * scale), means=m)
        q = gc.quantize(y * scale, "symbols", m).to(y.dtype)  # the integer symbols the decoder reads back
        return {"strings": [y_strings, z_strings], "shape": z.size()[-2:], "latents": {"q": q, "z": z_hat}}

    def decompress(self, strings, shape):
        eb, gc, scale = self.entropy_bottleneck, self.gaussian_conditional, self._scale()
        z_hat = eb.decompress(strings[1], shape)
        scales, means = self._params(z_hat)
        q = gc.decompress(strings[0], gc.build_indexes(scales * scale))
        y_hat = self._reconstruct(q, scales, means, scale)
        return {"x_hat": self.g_s(y_hat).clamp_(0, 1), "latents": {"q": q, "z": z_hat}}

    def string_layout(self, shape):
        return [[self.M * 16 * shape[0] * shape[1]], [self._z_layout(shape)]]

    def string_tables(self):
        return [self.gaussian_conditional, self.entropy_bottleneck]


def vbr_adapter(base: type, arch: str) -> type:
    """The CompressLab class of a CompressAI VBR architecture."""

    def __init__(self, N: int = 192, M: int = 320, lambdas: Sequence[float] = DEFAULT_LAMBDAS):
        lam = check_lambdas(arch, lambdas)
        base.__init__(self, N=N, M=M)
        self._init_rate(lam)
        self.hparams_dict = {"N": int(N), "M": int(M), "lambdas": list(lam)}

    def check_config(cls, cfg: Mapping[str, Any], max_steps: int) -> None:
        check_lambdas(arch, cfg.get("lambdas", DEFAULT_LAMBDAS))
        extra = sorted(set(cfg) - {"name", "arch", "N", "M", "lambdas"})
        if extra:
            raise ConfigError(f"model={arch}: unknown key(s) {', '.join(f'model.{k}' for k in extra)}; a "
                              f"variable-rate model takes N, M and lambdas")

    return type(base.__name__ + "Adapter", (VbrAdapter, base),
                {"__init__": __init__, "check_config": classmethod(check_config), "__module__": __name__})


__all__ = ["DEFAULT_LAMBDAS", "VbrAdapter", "check_lambdas", "vbr_adapter"]
