"""Adaptive encoding distributions (Ulhaq & Bajić, ICIP 2024, arXiv 2406.13059) on a frozen factorized model.

Per image the encoder histograms each latent channel (p), compresses the histograms into a small side-information
tensor q (``PdfCodec``), and codes y with the decoded estimate p_hat instead of the static entropy bottleneck's
density. The base factorized model (g_a, g_s, its EntropyBottleneck) comes from a trained checkpoint and is frozen by
default; only the base EB's medians (histogram centring) and quantile support (coding support) are used.

Coding (spec §1.5): the encoder decodes q itself, so both sides build the per-image CDF tables from the same p_hat.
Bit-exactness across processes: p_hat is computed by a float64 copy of h_{s,q} on CPU and rounded to a 2^-24 grid
before CompressAI's ``pmf_to_quantized_cdf`` (deterministic C++), so the two sides feed identical numbers to it.
Symbols outside the base EB's support use CompressAI's escape symbol + bypass coding.

``ideal=True``: p_hat = p and the side information costs nothing: the upper bound the paper plots. Its real
bitstream codes y with tables built from p; p itself travels in a string group the evaluator does not count
(``free_string_groups``), so the number is "y bits under the true histogram", as in the paper's ideal curve.
"""

from __future__ import annotations

import contextlib
import math
import struct
from typing import Any, Mapping

import torch
from compressai.models import CompressionModel
from torch import Tensor

from compresslab.entropy.bounds import min_string_bytes, rans_slack
from compresslab.entropy.deterministic import PMF_GRID, float64_cpu_copy, to_grid
from compresslab.entropy.histogram import clip_range, histogram, range_bound
from compresslab.entropy.pdf_codec import PdfCodec
from compresslab.entropy.ste import ste_round
from compresslab.models.factorized import Factorized
from compresslab.models.base import CompressLabModel
from compresslab.models.registry import register_model

KODAK_PIXELS = 768 * 512
_MIN_LOG2_LIK = -100.0  # keeps 2^-CE representable in float32


@register_model("adaptive")
class AdaptiveFactorized(CompressLabModel, CompressionModel):
    requires_base_ckpt = True
    base_model = "factorized"  # model.base_ckpt must hold one; registry.build loads it into ``base_state``

    def __init__(self, N: int = 128, M: int = 192, base_state: Mapping[str, Tensor] | None = None,
                 freeze_base: bool = True,
                 bins: int = 256, Nq: int = 32, Mq: int = 16, kernel: int = 15, groups: int = 8,
                 bound_factor: float = 0.75, ideal: bool = False, lambda_q: float | None = None,
                 target_pixels: int = KODAK_PIXELS, cache_latents: bool = True, cache_crops_per_image: int = 4):
        super().__init__()
        base = Factorized(N, M)
        if base_state is not None:
            base.load_state_dict(base_state)
        self.g_a, self.g_s, self.entropy_bottleneck = base.g_a, base.g_s, base.entropy_bottleneck
        self.pdf = PdfCodec(M, bins, Nq=Nq, Mq=Mq, kernel=kernel, groups=groups)
        self.bins, self.M, self.ideal = bins, M, bool(ideal)
        self.clip = clip_range(bins, bound_factor)
        self.lambda_q_fixed = lambda_q
        self.target_pixels = target_pixels
        self.freeze_base = bool(freeze_base)
        self.cache_latents = bool(cache_latents) and self.freeze_base
        # frozen base on cached latents: the training step optimises the rate only (logged as train/rate_loss)
        self.training_objective = "rate" if self.cache_latents else "rd"
        self.cache_crops_per_image = int(cache_crops_per_image)
        self.free_string_groups = {1} if self.ideal else set()
        self.raw_string_groups = {1} if self.ideal else set()  # the oracle PMFs are packed uint32, not rANS
        self.hparams_dict = {"N": N, "M": M, "bins": bins, "Nq": Nq, "Mq": Mq, "ideal": self.ideal}
        if self.freeze_base:
            for module in (self.g_a, self.g_s, self.entropy_bottleneck):
                module.requires_grad_(False)
        if base_state is not None:
            # Fixed support and medians for the whole training. (Not without a base: CompressAI's load_state_dict
            # only resizes empty CDF buffers, and a model being restored gets its tables from the checkpoint.)
            self.entropy_bottleneck.update(force=True)

    @classmethod
    def curve_label(cls, cfg) -> str:
        # oracle points (zero side bits) must never join the real model's curve
        return f"{cls.registry_name}-ideal" if cfg.get("ideal") else cls.registry_name

    @classmethod
    def check_config(cls, cfg, max_steps: int) -> None:
        from compresslab.errors import ConfigError

        if cfg.get("ideal") and max_steps > 0:
            raise ConfigError("model.ideal=true is the oracle bound (p_hat = p): it has nothing to train; evaluate "
                              "it with trainer.max_steps=0")

    def latent_cache_spec(self):
        return (self.g_a, self.cache_crops_per_image) if self.cache_latents else None

    # -- training ---------------------------------------------------------------------------------------------
    def lambda_q(self, height: int, width: int) -> float:
        """Side-info weight: the same q is amortised over more pixels on the target images (1/6 for 256^2 crops)."""
        return float(self.lambda_q_fixed) if self.lambda_q_fixed is not None else height * width / self.target_pixels

    def medians(self) -> Tensor:
        return self.entropy_bottleneck._get_medians().detach().reshape(1, -1, 1, 1)

    def histogram(self, y: Tensor) -> Tensor:
        return histogram(range_bound(y - self.medians(), *self.clip), self.bins)

    def training_losses(self, batch, criterion) -> tuple[dict[str, Any], int]:
        if not isinstance(batch, dict):
            return super().training_losses(batch, criterion)
        # cached latents (frozen g_a/g_s, see latent_cache.py): only rates change, D is a constant and omitted
        y = batch["y"]
        h, w = (int(v) for v in batch["image_hw"][0])
        losses = criterion.rate(self.rates_from_latent(y, (h, w)), y.shape[0] * h * w)
        losses["loss"] = losses["bpp_loss"]
        return losses, y.shape[0]

    def rates_from_latent(self, y: Tensor, image_hw: tuple[int, int]) -> dict[str, Any]:
        """Rates from a latent alone (the cached stage-2 path): y likelihoods encode the cross-entropy of the hard
        histogram under p_hat, so summing -log2 over them gives R_y = (H*W/256) * sum_j CE_j exactly."""
        n, m, h, w = y.shape
        p = self.histogram(y)
        if self.ideal:
            log_p_hat, likelihoods = torch.log(p.detach().clamp_min(1e-30)), {}
        else:
            log_p_hat, q_lik = self.pdf(p)
            likelihoods = {"q": q_lik}
        ce_bits = -(p * log_p_hat).sum(-1) / math.log(2)  # (n, M): bits per latent element, per channel
        y_lik = torch.exp2((-ce_bits).clamp_min(_MIN_LOG2_LIK))[..., None, None].expand(n, m, h, w)
        return {"likelihoods": {"y": y_lik, **likelihoods}, "rate_weights": {"q": self.lambda_q(*image_hw)},
                "p": p, "log_p_hat": log_p_hat}

    def forward(self, x: Tensor) -> dict[str, Any]:
        y = self.g_a(x)
        out = self.rates_from_latent(y, tuple(x.shape[-2:]))
        mode = "noise" if self.training and not self.freeze_base else "dequantize"
        y_hat = self.entropy_bottleneck.quantize(y, mode, self.entropy_bottleneck._get_medians())
        out["x_hat"] = self.g_s(y_hat)
        return out

    # -- coding -----------------------------------------------------------------------------------------------
    @torch.no_grad()
    def decode_pmf(self, q_hat: Tensor) -> Tensor:
        """p_hat from decoded q, computed identically on both sides: float64 CPU copy of h_{s,q}, softmax, then
        rounded to a 2^-24 grid (so tiny float differences cannot reach the CDF construction)."""
        p_hat = torch.softmax(float64_cpu_copy(self.pdf.h_s)(q_hat.to(device="cpu", dtype=torch.float64)), dim=-1)
        return to_grid(p_hat, PMF_GRID)

    def _tables(self, pmf: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """CDF tables for one image from its (M, B) PMF, on the base EB's quantile support clipped to the bins."""
        eb = self.entropy_bottleneck
        minima = (-eb._offset).long().cpu()
        maxima = (eb._cdf_length - 2).long().cpu() - 1 - minima
        half = self.bins // 2
        left, right = minima.clamp(max=half), maxima.clamp(max=half - 1)
        length = left + right + 1
        max_length = int(length.max())
        idx = (half - left)[:, None] + torch.arange(max_length)[None, :]
        valid = torch.arange(max_length)[None, :] < length[:, None]
        pmf_s = torch.where(valid, pmf.gather(1, idx.clamp(max=self.bins - 1)), torch.zeros((), dtype=pmf.dtype))
        tail = (1 - pmf_s.sum(1, keepdim=True)).clamp_min(0)
        cdf = eb._pmf_to_cdf(pmf_s, tail, length, max_length)
        return cdf, (length + 2).int(), (-left).int()

    @contextlib.contextmanager
    def _swapped_tables(self, tables):
        eb = self.entropy_bottleneck
        saved = (eb._quantized_cdf, eb._cdf_length, eb._offset)
        eb._quantized_cdf, eb._cdf_length, eb._offset = tables
        try:
            yield eb
        finally:
            eb._quantized_cdf, eb._cdf_length, eb._offset = saved

    def encode_latents(self, x: Tensor) -> dict[str, Tensor]:
        return {"y": self.g_a(x)}

    def latent_forward(self, latents: dict[str, Tensor]) -> dict[str, Any]:
        """True coding cost of a latent: rate of y under p_hat (from the q this y's histogram produces, with q
        rounded as it is coded) plus the side bits, and the reconstruction of the rounded y."""
        y = latents["y"]
        y_hat = ste_round(y, self.entropy_bottleneck._get_medians())
        was = self.pdf.training
        self.pdf.eval()
        out = self.rates_from_latent(y_hat, tuple(y.shape[-2:]))
        self.pdf.train(was)
        return {"x_hat": self.g_s(y_hat), "likelihoods": out["likelihoods"]}


    @torch.no_grad()
    def compress_latents(self, latents: dict[str, Tensor]) -> dict[str, Any]:
        y = latents["y"]
        eb = self.entropy_bottleneck
        p = self.histogram(y)
        if self.ideal:
            pmfs = to_grid(p.double().cpu(), PMF_GRID)
            side_strings, q_hat = [_pack_pmf(pm) for pm in pmfs], None
        else:
            q = self.pdf.analysis(p)
            side_strings = self.pdf.entropy_bottleneck.compress(q)
            q_hat = self.pdf.entropy_bottleneck.decompress(side_strings, (self.pdf.q_length,))
            pmfs = self.decode_pmf(q_hat)  # exactly what the decoder will rebuild
        y_strings = []
        for i in range(y.shape[0]):
            with self._swapped_tables(self._tables(pmfs[i])):
                y_strings += eb.compress(y[i: i + 1])
        latents = {"y": eb.quantize(y, "dequantize", eb._get_medians())}
        if q_hat is not None:
            latents["q"] = q_hat
        side_bits = 0 if self.ideal else 8 * sum(len(s) for s in side_strings)
        report = {"side_bits": side_bits, "y_bits": 8 * sum(len(s) for s in y_strings)}
        return {"strings": [y_strings, side_strings], "shape": y.size()[-2:], "latents": latents, "report": report}

    def string_layout(self, shape):
        # y under the per-image tables; the side string: the coded q (ideal: raw packed PMFs, 4 bytes per value)
        side = self.M * self.bins if self.ideal else self.pdf.entropy_bottleneck.channels * self.pdf.q_length
        return [[self.M * shape[0] * shape[1]], [side]]

    def string_tables(self):  # y's tables come from the decoded q; ideal side strings are raw
        return [None, None if self.ideal else self.pdf.entropy_bottleneck]

    @torch.no_grad()
    def check_strings(self, strings, shape) -> None:
        """y's tables come from the side information: decode q (a few hundred symbols, with the decoder's slack)
        and bound each y string under the tables it gives."""
        super().check_strings(strings, shape)
        if self.ideal:
            return
        n_q = self.string_layout(shape)[1][0]
        side = [s + bytes(rans_slack(len(s), n_q)) for s in strings[1]]
        pmfs = self.decode_pmf(self.pdf.entropy_bottleneck.decompress(side, (self.pdf.q_length,)))
        for i, s in enumerate(strings[0]):
            with self._swapped_tables(self._tables(pmfs[i])) as eb:
                least = min_string_bytes(eb.channels * int(shape[0]) * int(shape[1]), eb)
            if len(s) < least:
                raise ValueError(f"string group 0 holds {len(s)} bytes, but the {eb.channels}x{shape[0]}x{shape[1]} "
                                 f"symbols the header asks for need at least {least} under the tables its side "
                                 f"information gives")

    @torch.no_grad()
    def decompress(self, strings, shape) -> dict[str, Any]:
        y_strings, side_strings = strings
        latents = {}
        if self.ideal:
            pmfs = torch.stack([_unpack_pmf(s, self.M, self.bins) for s in side_strings])
        else:
            q_hat = self.pdf.entropy_bottleneck.decompress(side_strings, (self.pdf.q_length,))
            pmfs = self.decode_pmf(q_hat)
            latents["q"] = q_hat
        ys = []
        for i, s in enumerate(y_strings):
            with self._swapped_tables(self._tables(pmfs[i])) as eb:
                ys.append(eb.decompress([s], shape))
        y_hat = torch.cat(ys)
        latents["y"] = y_hat
        return {"x_hat": self.g_s(y_hat).clamp_(0, 1), "latents": latents}


def _pack_pmf(pmf: Tensor) -> bytes:
    """Ideal mode's oracle PMF (not counted as bits): the 2^-24 grid values as uint32."""
    ints = torch.round(pmf * PMF_GRID).to(torch.int64).flatten().tolist()
    return struct.pack(f"<{len(ints)}I", *ints)


def _unpack_pmf(data: bytes, m: int, bins: int) -> Tensor:
    if len(data) != 4 * m * bins:
        raise ValueError(f"oracle PMF string is {len(data)} bytes, expected {4 * m * bins}")
    ints = struct.unpack(f"<{m * bins}I", data)
    return torch.tensor(ints, dtype=torch.float64).reshape(m, bins) / PMF_GRID


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
