"""Static controls for the adaptive model on a factorized base (issues 17 and 30): the frozen base coded through the
adaptive model's own coding path with static per-channel PMFs re-fitted on latents, so what the adaptive model gains
beyond them is the gain of per-image adaptation. Built by ``fit_static_refit`` / ``fit_static_loo``
(compresslab.drivers.adaptive_static_control); not registered models."""

from __future__ import annotations

import math
import struct
from typing import Any

import torch
from torch import Tensor

from compresslab.entropy.bounds import min_string_bytes
from compresslab.entropy.deterministic import PMF_GRID, to_grid
from compresslab.entropy.ste import ste_round
from compresslab.models.adaptive_factorized import AdaptiveFactorized
from compresslab.models.adaptive_stage import MIN_LOG2_LIK as _MIN_LOG2_LIK


class StaticRefitControl(AdaptiveFactorized):
    """The control a reviewer asks for (issue 17): the frozen base coded with ONE static per-channel PMF re-fitted
    on training latents, through the adaptive model's own coding path (same support, escape symbol, 2^-24 grid,
    16-bit CDFs) and with no side information. Whatever the adaptive model gains beyond this control is the gain of
    per-image adaptation; what this control gains over the base is the re-fit of a badly fitted static density.
    Not registered: an evaluation object built by ``fit_static_refit`` (compresslab.drivers.adaptive_static_control)."""

    static_pmf: Tensor

    def compress_latents(self, latents: dict[str, Tensor]) -> dict[str, Any]:
        y = latents["y"]
        eb = self.entropy_bottleneck
        y_strings = []
        for i in range(y.shape[0]):
            with self._swapped_tables(self._tables(self.static_pmf)):
                y_strings += eb.compress(y[i: i + 1])
        report = {"side_bits": 0, "y_bits": 8 * sum(len(s) for s in y_strings)}
        return {"strings": [y_strings, [b"" for _ in y_strings]], "shape": y.size()[-2:],
                "latents": {"y": eb.quantize(y, "dequantize", eb._get_medians())}, "report": report}

    def decompress(self, strings, shape) -> dict[str, Any]:
        y_strings, _ = strings
        with torch.no_grad(), self._swapped_tables(self._tables(self.static_pmf)) as eb:
            y_hat = torch.cat([eb.decompress([s], shape) for s in y_strings])
        return {"x_hat": self.g_s(y_hat).clamp_(0, 1), "latents": {"y": y_hat}}

    def latent_forward(self, latents: dict[str, Tensor]) -> dict[str, Any]:
        """Estimated rate: cross-entropy of each image's hard histogram under the static PMF."""
        y = latents["y"]
        y_hat = ste_round(y, self.entropy_bottleneck._get_medians())
        n, m, h, w = y.shape
        p = self.histogram(y_hat)
        log_p = torch.log(self.static_pmf.to(p).clamp_min(1e-30))[None]
        ce_bits = -(p * log_p).sum(-1) / math.log(2)
        y_lik = torch.exp2((-ce_bits).clamp_min(_MIN_LOG2_LIK))[..., None, None].expand(n, m, h, w)
        return {"x_hat": self.g_s(y_hat), "likelihoods": {"y": y_lik}}

    def forward(self, x: Tensor) -> dict[str, Any]:
        return self.latent_forward({"y": self.g_a(x)})


def static_label(fitted_on: str) -> str:
    """The curve label of a static control, naming what its PMF was fitted on (issue 30: a control is named for
    what it is, not for what it would ideally be)."""
    return f"static ({fitted_on})"


STATIC_TRAIN_LABEL = "static ({n} train crops)"   # fit_static_refit on n training crops
STATIC_LOO_LABEL = static_label("leave-one-out")  # fit_static_loo on the evaluation images, each one left out


def _pooled_pmf(counts: Tensor, floor: float) -> Tensor:
    """(M, B) symbol counts -> the per-channel PMF on the 2^-24 grid, with a small floor so an unseen symbol stays
    codable."""
    pmf = counts / counts.sum(-1, keepdim=True)
    pmf = (pmf + floor) / (1 + floor * counts.shape[-1])
    return to_grid(pmf, PMF_GRID)


def _padded(model, x: Tensor) -> Tensor:
    """x as the evaluator codes it: (1, 3, H, W) zero-padded to the model's pad multiple (compressai.ops)."""
    from compressai.ops import compute_padding

    from compresslab.models.base import pad_multiple_of

    x = x[None] if x.dim() == 3 else x
    pad, _ = compute_padding(*x.shape[-2:], min_div=pad_multiple_of(model))
    return torch.nn.functional.pad(x, pad, mode="constant", value=0)


@torch.no_grad()
def _symbol_counts(model: "StaticRefitControl", x: Tensor) -> tuple[Tensor, Tensor]:
    """(M, B) float64 counts of the coded symbols of one image, and its symbols (the quantised y the coder sees)."""
    y = model.g_a(_padded(model, x))
    y_hat = model.entropy_bottleneck.quantize(y, "dequantize", model.entropy_bottleneck._get_medians())
    return torch.round(model.histogram(y_hat)[0].double() * y.shape[-2] * y.shape[-1]), y_hat


@torch.no_grad()
def fit_static_refit(base_ckpt: str, images, N: int = 128, M: int = 192, bins: int = 256,
                     floor: float = 1e-6) -> StaticRefitControl:
    """Pool the hard histograms of g_a(x) over ``images`` (the training crops, (3,H,W) tensors) per channel, with a
    small floor so a symbol unseen in training stays codable, and round to the adaptive coder's 2^-24 grid."""
    from compresslab.models.base_weights import load_base_state

    base = load_base_state(base_ckpt, StaticRefitControl.base_model, {"N": N, "M": M})
    model = StaticRefitControl(N=N, M=M, base_state=base, bins=bins).eval()
    counts = torch.zeros(M, bins, dtype=torch.float64)
    for x in images:
        y = model.g_a(x[None])
        counts += model.histogram(y)[0].double() * y.shape[-2] * y.shape[-1]
    model.static_pmf = _pooled_pmf(counts, floor)
    return model


def _symbol_key(y_hat: Tensor) -> str:
    """An image's identity for the leave-one-out control: a hash of its coded symbols (integers, so float noise in
    g_a cannot change it) and their shape."""
    import hashlib

    q = torch.round(y_hat.detach().cpu().double()).to(torch.int32).contiguous()
    return hashlib.sha256(repr(tuple(q.shape)).encode() + q.numpy().tobytes()).hexdigest()


class StaticLOOControl(StaticRefitControl):
    """The stronger static control (issue 30): ONE static per-channel PMF per image, fitted on the evaluation set
    itself with that image left out (image i is coded with the PMF pooled over the other images' symbols), so no
    image is coded with a density that saw it. Same coding path as ``StaticRefitControl``.

    The decoder needs to know which of the n tables codes a file: the encoder writes the table's index as a 2-byte
    side string, counted in the rate (16 bits per image). The encoder finds an image's table from a hash of its
    coded symbols; an image outside the fitted set is refused (never coded with a density fitted on all of them).
    Not registered: built by ``fit_static_loo`` (compresslab.drivers.adaptive_static_control --fit loo)."""

    loo_pmfs: Tensor        # (n, M, B): row i fitted without image i
    image_keys: dict[str, int]

    def table_index(self, y_hat: Tensor) -> int:
        key = _symbol_key(y_hat)
        if key not in self.image_keys:
            raise KeyError("the leave-one-out control codes only the images it was fitted on (this image's symbols "
                           "match none of them): fit it on the evaluation set with fit_static_loo")
        return self.image_keys[key]

    def _y_hat(self, y: Tensor) -> Tensor:
        return self.entropy_bottleneck.quantize(y, "dequantize", self.entropy_bottleneck._get_medians())

    def compress_latents(self, latents: dict[str, Tensor]) -> dict[str, Any]:
        y = latents["y"]
        eb = self.entropy_bottleneck
        y_hat = self._y_hat(y)
        y_strings, side_strings = [], []
        for i in range(y.shape[0]):
            k = self.table_index(y_hat[i: i + 1])
            with self._swapped_tables(self._tables(self.loo_pmfs[k])):
                y_strings += eb.compress(y[i: i + 1])
            side_strings.append(struct.pack("<H", k))
        report = {"side_bits": 8 * sum(len(s) for s in side_strings), "y_bits": 8 * sum(len(s) for s in y_strings)}
        return {"strings": [y_strings, side_strings], "shape": y.size()[-2:], "latents": {"y": y_hat},
                "report": report}

    def _index_of(self, side: bytes) -> int:
        if len(side) != 2:
            raise ValueError(f"leave-one-out table index string is {len(side)} bytes, expected 2")
        k = struct.unpack("<H", side)[0]
        if k >= self.loo_pmfs.shape[0]:
            raise ValueError(f"leave-one-out table index {k} is out of range ({self.loo_pmfs.shape[0]} tables)")
        return k

    def string_layout(self, shape):
        return [[self.M * shape[0] * shape[1]], [1]]

    def string_tables(self):
        return [None, None]

    @torch.no_grad()
    def check_strings(self, strings, shape) -> None:
        for i, s in enumerate(strings[0]):
            with self._swapped_tables(self._tables(self.loo_pmfs[self._index_of(strings[1][i])])) as eb:
                least = min_string_bytes(eb.channels * int(shape[0]) * int(shape[1]), eb)
            if len(s) < least:
                raise ValueError(f"string group 0 holds {len(s)} bytes, but the symbols the header asks for need at "
                                 f"least {least} under the table its index names")

    def decompress(self, strings, shape) -> dict[str, Any]:
        y_strings, side_strings = strings
        ys = []
        with torch.no_grad():
            for s, side in zip(y_strings, side_strings):
                with self._swapped_tables(self._tables(self.loo_pmfs[self._index_of(side)])) as eb:
                    ys.append(eb.decompress([s], shape))
            y_hat = torch.cat(ys)
        return {"x_hat": self.g_s(y_hat).clamp_(0, 1), "latents": {"y": y_hat}}

    def latent_forward(self, latents: dict[str, Tensor]) -> dict[str, Any]:
        """Estimated rate: cross-entropy of each image's hard histogram under its leave-one-out PMF (+ no side
        bits in the estimate: the 16-bit index is in the real rate only)."""
        y = latents["y"]
        y_hat = ste_round(y, self.entropy_bottleneck._get_medians())
        n, m, h, w = y.shape
        p = self.histogram(y_hat)
        pmfs = torch.stack([self.loo_pmfs[self.table_index(y_hat[i: i + 1])] for i in range(n)]).to(p)
        ce_bits = -(p * torch.log(pmfs.clamp_min(1e-30))).sum(-1) / math.log(2)
        y_lik = torch.exp2((-ce_bits).clamp_min(_MIN_LOG2_LIK))[..., None, None].expand(n, m, h, w)
        return {"x_hat": self.g_s(y_hat), "likelihoods": {"y": y_lik}}


@torch.no_grad()
def fit_static_loo(base_ckpt: str, images, N: int = 128, M: int = 192, bins: int = 256,
                   floor: float = 1e-6) -> StaticLOOControl:
    """The leave-one-image-out static control on ``images`` (the evaluation images, (3,H,W) tensors exactly as the
    evaluator loads them, crop included): per image i, the pooled per-channel histogram of every OTHER image's coded
    symbols (same floor and grid as ``fit_static_refit``). Two images with identical symbols are refused (their
    tables could not be told apart)."""
    from compresslab.models.base_weights import load_base_state

    images = list(images)
    if len(images) < 2:
        raise ValueError("leave-one-out needs at least 2 images (each one is coded with a PMF fitted on the others)")
    base = load_base_state(base_ckpt, StaticLOOControl.base_model, {"N": N, "M": M})
    model = StaticLOOControl(N=N, M=M, base_state=base, bins=bins).eval()
    counts, keys = [], {}
    for i, x in enumerate(images):
        c, y_hat = _symbol_counts(model, x)
        key = _symbol_key(y_hat)
        if key in keys:
            raise ValueError(f"images {keys[key]} and {i} have identical coded symbols: leave-one-out cannot tell "
                             f"them apart")
        keys[key] = i
        counts.append(c)
    # row i: the others' counts only (summed afresh, never "all minus mine")
    model.loo_pmfs = torch.stack([_pooled_pmf(torch.stack([c for j, c in enumerate(counts) if j != i]).sum(0), floor)
                                  for i in range(len(counts))])
    model.image_keys = keys
    return model
