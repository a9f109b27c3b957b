"""bmshj2018-hyperprior (Ballé et al. 2018, scale hyperprior).

A thin subclass of CompressAI's ``ScaleHyperprior``: same modules and state-dict keys; CompressAI's own strings with
``deterministic_coding=false``, device-independent ones by default (see ``_coding_indexes``). compress and
decompress also return the quantised latents (y, z) for the evaluator's encoder/decoder equality check.
"""

from __future__ import annotations

import torch
from compressai.models import ScaleHyperprior

from compresslab.entropy.deterministic import float64_cpu_copy, to_grid
from compresslab.entropy.ste import coded_gaussian_likelihood, eb_likelihood, ste_round
from compresslab.models.base import CompressLabModel
from compresslab.models.registry import register_model


@register_model("hyperprior")
class Hyperprior(CompressLabModel, ScaleHyperprior):
    coded_stride = 64  # compress returns z's shape, as CompressAI's ScaleHyperprior does
    compressai_arch = "bmshj2018-hyperprior"

    def __init__(self, N: int = 128, M: int = 192, deterministic_coding: bool = True):
        super().__init__(N=N, M=M)
        self.deterministic_coding = bool(deterministic_coding)
        self.hparams_dict = {"N": N, "M": M, "deterministic_coding": self.deterministic_coding}

    def forward(self, x):
        if self.training:  # CompressAI's objective: uniform noise, float scales
            return super().forward(x)
        return self.latent_forward(self.encode_latents(x))  # evaluation: the rates the coder realises

    def encode_latents(self, x):
        y = self.g_a(x)
        return {"y": y, "z": self.h_a(y.abs())}

    def latent_forward(self, latents):
        eb = self.entropy_bottleneck
        z_hat = ste_round(latents["z"], eb._get_medians())
        y_hat = ste_round(latents["y"])
        scales = self.h_s(z_hat)
        return {"x_hat": self.g_s(y_hat), "likelihoods": {
            "y": coded_gaussian_likelihood(self.gaussian_conditional, y_hat, scales), "z": eb_likelihood(eb, z_hat)}}


    def _coding_indexes(self, z_hat):
        """The scale table index of every y element, the same on every device. h_s in float32 is not: a GPU
        (TF32, other kernels) and a CPU pick other tables for some elements and a file encoded on one decodes to
        garbage on the other (measured: 24/24 Kodak images with a trained model, H100 -> CPU; CompressAI issues
        #20, #279). Deterministic mode: a float64 CPU copy of h_s on the integer z_hat, scales rounded to a 2^-8
        grid (a float64 difference would have to straddle a grid point). ``deterministic_coding=false`` gives
        CompressAI's own strings (same device only)."""
        gc = self.gaussian_conditional
        if not self.deterministic_coding:
            return gc.build_indexes(self.h_s(z_hat))
        scales = to_grid(float64_cpu_copy(self.h_s)(z_hat.detach().to("cpu", torch.float64)))
        # exact comparisons of grid values with the (float32) scale table: the same indexes on any device
        return gc.build_indexes(scales.to(z_hat.device))

    def compress_latents(self, latents):
        y, z = latents["y"], latents["z"]
        z_strings = self.entropy_bottleneck.compress(z)
        z_hat = self.entropy_bottleneck.decompress(z_strings, z.size()[-2:])
        indexes = self._coding_indexes(z_hat)
        y_strings = self.gaussian_conditional.compress(y, indexes)
        latents = {
            "y": self.gaussian_conditional.quantize(y, "dequantize"),
            "z": self.entropy_bottleneck.quantize(z, "dequantize", self.entropy_bottleneck._get_medians()),
        }
        return {"strings": [y_strings, z_strings], "shape": z.size()[-2:], "latents": latents}

    def string_layout(self, shape):
        # shape is z's (stride 64); y (stride 16) is 4x that per side, every element coded
        return [[self.M * 16 * shape[0] * shape[1]], [self.entropy_bottleneck.channels * shape[0] * shape[1]]]

    def string_tables(self):
        return [self.gaussian_conditional, self.entropy_bottleneck]

    def decompress(self, strings, shape):
        z_hat = self.entropy_bottleneck.decompress(strings[1], shape)
        indexes = self._coding_indexes(z_hat)
        y_hat = self.gaussian_conditional.decompress(strings[0], indexes, z_hat.dtype)
        return {"x_hat": self.g_s(y_hat).clamp_(0, 1), "latents": {"y": y_hat, "z": z_hat}}
