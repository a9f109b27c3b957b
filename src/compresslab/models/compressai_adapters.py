"""The latent interface of models/base.py for CompressAI's image model families, as mixins over CompressAI's own
classes (``class A(MeanScaleAdapter, MeanScaleHyperprior)``): same modules, same state-dict keys, and ``compress``
runs CompressAI's own entropy-coding calls in CompressAI's order, so the strings are CompressAI's byte for byte
(tests/test_compressai_models.py compares them). What the mixins add: the quantised latents on both sides (the
evaluator proves the decoder rebuilt what the encoder coded), a shape the .clab container can hold, the string
layout a decoder checks a file against, and hard-quantised rates with straight-through gradients (LOF).

Families (picked by ``compressai_models.family_of`` from the class hierarchy, so a user's own
``@compressai.registry.register_model`` subclass of one of these classes works too):
- mean-scale hyperprior (mbt2018-mean): y, z; means and scales from h_s(z_hat);
- joint autoregressive (mbt2018, cheng2020-anchor, cheng2020-attn): the same plus a serial 5x5 context;
- latent codecs (``SimpleVAECompressionModel``: cheng2020-anchor-checkerboard, elic2022-*): y through a
  ``HyperpriorLatentCodec``; CompressAI's nested shape dict is rebuilt from z's shape on the decoder side.
"""

from __future__ import annotations

import contextlib
import copy

import torch
import torch.nn.functional as F

from compresslab.entropy.deterministic import float64_cpu_copy, to_grid
from compresslab.entropy.ste import coded_gaussian_likelihood, eb_likelihood, ste_round
from compresslab.models.base import CompressLabModel


class _Adapter(CompressLabModel):
    supports_deterministic_coding = False
    coded_stride = 64  # compress returns z's shape (stride 64), as CompressAI's hyperprior models do

    def forward(self, x):
        if self.training:  # CompressAI's own training objective (uniform noise)
            return super().forward(x)
        return self.latent_forward(self.encode_latents(x))  # evaluation: hard-quantised rates

    def _z_layout(self, shape):
        return self.entropy_bottleneck_module().channels * shape[0] * shape[1]

    def entropy_bottleneck_module(self):
        return self.entropy_bottleneck


class MeanScaleAdapter(_Adapter):
    """mbt2018-mean (``MeanScaleHyperprior``): CompressAI's ``compress``/``decompress`` bodies from the latents on.
    ``deterministic_coding`` (the default, as for our hyperprior): means and scales from a float64 CPU copy of h_s,
    rounded to a 2^-8 grid, so a file encoded on one device decodes on any other (a float32 h_s on a GPU and on a
    CPU pick other tables and means for some elements); false: CompressAI's own strings (same device only)."""

    supports_deterministic_coding = True
    deterministic_coding = False

    def encode_latents(self, x):
        y = self.g_a(x)
        return {"y": y, "z": self.h_a(y)}

    def _params(self, z_hat):
        return self.h_s(z_hat).chunk(2, 1)  # scales, means

    def _coding_params(self, z_hat):
        if not self.deterministic_coding:
            return self._params(z_hat)
        params = to_grid(float64_cpu_copy(self.h_s)(z_hat.detach().to("cpu", torch.float64)))
        # grid values are exact in float32: the same tables and means on every device
        return params.to(z_hat.device, torch.float32).chunk(2, 1)

    def _training_params(self, z_hat, y):
        """(scales, means) of y in training; the autoregressive family adds its context."""
        return self._params(z_hat)

    def latent_forward(self, latents):
        eb = self.entropy_bottleneck
        z_hat = ste_round(latents["z"], eb._get_medians())
        scales, means = self._training_params(z_hat, latents["y"])
        y_hat = ste_round(latents["y"], means)
        return {"x_hat": self.g_s(y_hat), "likelihoods": {
            "y": coded_gaussian_likelihood(self.gaussian_conditional, y_hat, scales, means),
            "z": eb_likelihood(eb, z_hat)}}

    def compress_latents(self, latents):
        y, z = latents["y"], latents["z"]
        eb, gc = self.entropy_bottleneck, self.gaussian_conditional
        z_strings = eb.compress(z)
        z_hat = eb.decompress(z_strings, z.size()[-2:])
        scales, means = self._coding_params(z_hat)
        y_strings = gc.compress(y, gc.build_indexes(scales), means=means)
        return {"strings": [y_strings, z_strings], "shape": z.size()[-2:],
                "latents": {"y": gc.quantize(y, "dequantize", means), "z": z_hat}}

    def decompress(self, strings, shape):
        eb, gc = self.entropy_bottleneck, self.gaussian_conditional
        z_hat = eb.decompress(strings[1], shape)
        scales, means = self._coding_params(z_hat)
        y_hat = gc.decompress(strings[0], gc.build_indexes(scales), means=means)
        return {"x_hat": self.g_s(y_hat).clamp_(0, 1), "latents": {"y": y_hat, "z": z_hat}}

    def string_layout(self, shape):
        return [[self.M * 16 * shape[0] * shape[1]], [self._z_layout(shape)]]  # every y element, every z element

    def string_tables(self):
        return [self.gaussian_conditional, self.entropy_bottleneck]


class AutoregressiveAdapter(MeanScaleAdapter):
    """mbt2018 and cheng2020-anchor/attn (``JointAutoregressiveHierarchicalPriors``): CompressAI's serial
    ``_compress_ar``/``_decompress_ar`` (one rANS string per image, raster order). Both write the quantised y into
    the padded tensor they are given, which is where the latents for the equality check come from.
    ``deterministic_coding`` (opt-in: the default stays CompressAI's strings, which earlier files and checkpoints
    hold): the same serial loop with float64 CPU copies of h_s, the context network and entropy_parameters, whose
    means and scales are rounded to the 2^-8 grid, so every position picks the same table and mean on any device."""

    _KERNEL, _S = 5, 4  # CompressAI's context kernel and y/z scale
    deterministic_coding_default = False

    def _training_params(self, z_hat, y):
        # CompressAI's parallel form (its forward): the masked context of round(y); the serial coder's context is
        # round(y - mu) + mu, so this is an estimate of the coded rate (bpp_ratio says by how much)
        ctx = self.context_prediction(ste_round(y))
        return self.entropy_parameters(torch.cat((self.h_s(z_hat), ctx), dim=1)).chunk(2, 1)  # scales, means

    @contextlib.contextmanager
    def _serial_coding(self, z_hat):
        """h_s's output for the serial loop; with deterministic coding, float64 on the CPU, and the loop's context
        and parameter networks swapped for float64 CPU copies with gridded outputs while it runs (CompressAI's loop
        reads them as attributes)."""
        if not self.deterministic_coding:
            yield self.h_s(z_hat)
            return
        names = ("context_prediction", "entropy_parameters", "gaussian_conditional")
        saved = tuple(self._modules[n] for n in names)
        self._modules["context_prediction"] = float64_cpu_copy(saved[0])
        self._modules["entropy_parameters"] = torch.nn.Sequential(float64_cpu_copy(saved[1]), _Grid())
        # its scale table on the CPU too (a model on a GPU: the loop's indexes were built across devices)
        self._modules["gaussian_conditional"] = saved[2] if saved[2].scale_table.device.type == "cpu" else \
            copy.deepcopy(saved[2]).cpu()
        try:
            yield float64_cpu_copy(self.h_s)(z_hat.detach().to("cpu", torch.float64))
        finally:
            for n, m in zip(names, saved):
                self._modules[n] = m

    def compress_latents(self, latents):
        y, z = latents["y"], latents["z"]
        eb = self.entropy_bottleneck
        z_strings = eb.compress(z)
        z_hat = eb.decompress(z_strings, z.size()[-2:])
        k, s = self._KERNEL, self._S
        p = (k - 1) // 2
        h, w = z_hat.size(2) * s, z_hat.size(3) * s
        with self._serial_coding(z_hat) as params:
            y_hat = F.pad(y.to(params), (p, p, p, p))
            y_strings = [self._compress_ar(y_hat[i:i + 1], params[i:i + 1], h, w, k, p) for i in range(y.size(0))]
        # symbols plus grid means: exact in float32
        return {"strings": [y_strings, z_strings], "shape": z.size()[-2:],
                "latents": {"y": F.pad(y_hat, (-p, -p, -p, -p)).to(y), "z": z_hat}}

    def decompress(self, strings, shape):
        z_hat = self.entropy_bottleneck.decompress(strings[1], shape)
        k, s = self._KERNEL, self._S
        p = (k - 1) // 2
        h, w = z_hat.size(2) * s, z_hat.size(3) * s
        with self._serial_coding(z_hat) as params:
            y_hat = torch.zeros((z_hat.size(0), self.M, h + 2 * p, w + 2 * p), dtype=params.dtype,
                                device=params.device)
            for i, y_string in enumerate(strings[0]):
                self._decompress_ar(y_string, y_hat[i:i + 1], params[i:i + 1], h, w, k, p)
        y_hat = F.pad(y_hat, (-p, -p, -p, -p)).to(z_hat)
        return {"x_hat": self.g_s(y_hat).clamp_(0, 1), "latents": {"y": y_hat, "z": z_hat}}


class _Grid(torch.nn.Module):
    def forward(self, t):
        return to_grid(t)


class LatentCodecAdapter(_Adapter):
    """``SimpleVAECompressionModel`` with a ``HyperpriorLatentCodec`` (cheng2020-anchor-checkerboard, ELIC): the
    latent codec's own compress/decompress. Its "shape" is a nested dict (per group, per checkerboard half); the
    container stores z's shape and the decoder rebuilds the dict for that size by coding a zero latent once."""

    def entropy_bottleneck_module(self):
        return self.latent_codec["hyper"].entropy_bottleneck

    def encode_latents(self, x):
        return {"y": self.g_a(x)}

    def latent_forward(self, latents):
        # the codec's own forward; in eval mode (evaluation, LOF) its "ste" quantisers round hard with
        # straight-through gradients
        out = self.latent_codec(latents["y"])
        return {"x_hat": self.g_s(out["y_hat"]), "likelihoods": out["likelihoods"]}

    def compress_latents(self, latents):
        out = self.latent_codec.compress(latents["y"])
        z_shape = torch.Size(out["shape"]["hyper"])
        return {"strings": out["strings"], "shape": z_shape, "latents": {"y": out["y_hat"]}}

    @torch.no_grad()
    def _shape_tree(self, z_shape):
        """CompressAI's nested shape for a y of 4x z's size: it depends on the size only."""
        key = tuple(int(v) for v in z_shape)
        cache = self.__dict__.setdefault("_shape_trees", {})
        if key not in cache:
            p = next(self.parameters())
            y = torch.zeros((1, self._latent_channels(), 4 * key[0], 4 * key[1]), dtype=p.dtype, device=p.device)
            cache[key] = self.latent_codec.compress(y)["shape"]
        return cache[key]

    def _latent_channels(self) -> int:
        return int(self.hparams_dict.get("M") or self.hparams_dict["N"])

    def decompress(self, strings, shape):
        out = self.latent_codec.decompress(strings, self._shape_tree(shape))
        y_hat = out["y_hat"]
        return {"x_hat": self.g_s(y_hat).clamp_(0, 1), "latents": {"y": y_hat}}

    def string_layout(self, shape):
        # groups: the y strings (their split by channel group and checkerboard half is the architecture's; each is
        # bounded by every y element), then z's
        y = self._latent_channels() * 16 * shape[0] * shape[1]
        return [[y] for _ in range(self._y_string_groups())] + [[self._z_layout(shape)]]

    def _y_string_groups(self) -> int:
        cache = self.__dict__.setdefault("_n_y_groups", [])
        if not cache:
            p = next(self.parameters())
            with torch.no_grad():
                y = torch.zeros((1, self._latent_channels(), 4, 4), dtype=p.dtype, device=p.device)
                cache.append(len(self.latent_codec.compress(y)["strings"]) - 1)
        return cache[0]

    def string_tables(self):
        # z's count is exact; the y counts are upper bounds (a checkerboard half codes half of them)
        return [None] * self._y_string_groups() + [self.entropy_bottleneck_module()]
