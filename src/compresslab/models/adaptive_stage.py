"""The Ulhaq & Bajić stage itself, shared by every base it runs on (models/adaptive.py: the factorized y;
models/adaptive_base.py: a hyperprior-family z): per image, the histogram p of each channel of the latent a base
EntropyBottleneck codes, its side information q (``PdfCodec``), the decoded estimate p_hat, and the per-image CDF
tables built from it on that EB's quantile support (``_tables``), swapped into the EB while it codes.

A class using this mixin sets ``self.pdf``, ``self.bins``, ``self.clip``, ``self.ideal``, ``self.lambda_q_fixed``,
``self.target_pixels`` (``_init_stage``) and has ``entropy_bottleneck`` = the EB whose density p_hat replaces.

Bit-exactness across processes: p_hat is computed by a float64 copy of h_{s,q} on CPU and rounded to a 2^-24 grid
before CompressAI's ``pmf_to_quantized_cdf`` (deterministic C++), so the two sides feed identical numbers to it.
Symbols outside the base EB's support use CompressAI's escape symbol + bypass coding.
"""

from __future__ import annotations

import contextlib
import math
import struct
from typing import Any

import torch
from torch import Tensor

from compresslab.entropy.deterministic import PMF_GRID, float64_cpu_copy, to_grid
from compresslab.entropy.histogram import clip_range, histogram, range_bound
from compresslab.entropy.pdf_codec import PdfCodec

KODAK_PIXELS = 768 * 512
MIN_LOG2_LIK = -100.0  # keeps 2^-CE representable in float32


class AdaptiveStage:
    def _init_stage(self, channels: int, bins: int, Nq: int, Mq: int, kernel: int, groups: int,
                    bound_factor: float, ideal: bool, lambda_q: float | None, target_pixels: int) -> None:
        self.pdf = PdfCodec(channels, bins, Nq=Nq, Mq=Mq, kernel=kernel, groups=groups)
        self.bins, self.ideal = bins, bool(ideal)
        self.clip = clip_range(bins, bound_factor)
        self.lambda_q_fixed = lambda_q
        self.target_pixels = target_pixels

    def lambda_q(self, height: int, width: int) -> float:
        """Side-info weight: the same q is amortised over more pixels on the target images (1/6 for 256^2 crops)."""
        return float(self.lambda_q_fixed) if self.lambda_q_fixed is not None else height * width / self.target_pixels

    def medians(self) -> Tensor:
        return self.entropy_bottleneck._get_medians().detach().reshape(1, -1, 1, 1)

    def histogram(self, y: Tensor) -> Tensor:
        return histogram(range_bound(y - self.medians(), *self.clip), self.bins)

    def rates_from_latent(self, y: Tensor, image_hw: tuple[int, int], key: str = "y") -> dict[str, Any]:
        """Rates from a latent alone (the cached stage-2 path): the latent's likelihoods encode the cross-entropy of
        the hard histogram under p_hat, so summing -log2 over them gives R = (positions) * sum_j CE_j exactly."""
        n, m, h, w = y.shape
        p = self.histogram(y)
        if self.ideal:
            log_p_hat, likelihoods = torch.log(p.detach().clamp_min(1e-30)), {}
        else:
            log_p_hat, q_lik = self.pdf(p)
            likelihoods = {"q": q_lik}
        ce_bits = -(p * log_p_hat).sum(-1) / math.log(2)  # (n, M): bits per latent element, per channel
        lik = torch.exp2((-ce_bits).clamp_min(MIN_LOG2_LIK))[..., None, None].expand(n, m, h, w)
        return {"likelihoods": {key: lik, **likelihoods}, "rate_weights": {"q": self.lambda_q(*image_hw)},
                "p": p, "log_p_hat": log_p_hat}

    # -- coding -----------------------------------------------------------------------------------------------
    @torch.no_grad()
    def decode_pmf(self, q_hat: Tensor) -> Tensor:
        """p_hat from decoded q, computed identically on both sides: float64 CPU copy of h_{s,q}, softmax, then
        rounded to a 2^-24 grid (so tiny float differences cannot reach the CDF construction)."""
        p_hat = torch.softmax(float64_cpu_copy(self.pdf.h_s)(q_hat.to(device="cpu", dtype=torch.float64)), dim=-1)
        return to_grid(p_hat, PMF_GRID)

    @torch.no_grad()
    def side_information(self, p: Tensor) -> tuple[Tensor, list[bytes], Tensor | None]:
        """(per-image PMFs the coder uses, the side strings, q_hat or None): the encoder decodes q itself, so its
        PMFs are exactly what the decoder rebuilds. Ideal: p itself, carried raw (not counted)."""
        if self.ideal:
            pmfs = to_grid(p.double().cpu(), PMF_GRID)
            return pmfs, [pack_pmf(pm) for pm in pmfs], None
        q = self.pdf.analysis(p)
        side_strings = self.pdf.entropy_bottleneck.compress(q)
        q_hat = self.pdf.entropy_bottleneck.decompress(side_strings, (self.pdf.q_length,))
        return self.decode_pmf(q_hat), side_strings, q_hat

    @torch.no_grad()
    def pmfs_from_side(self, side_strings) -> tuple[Tensor, Tensor | None]:
        """The decoder's half of ``side_information``."""
        if self.ideal:
            return torch.stack([unpack_pmf(s, self.pdf.M, self.bins) for s in side_strings]), None
        q_hat = self.pdf.entropy_bottleneck.decompress(side_strings, (self.pdf.q_length,))
        return self.decode_pmf(q_hat), q_hat

    def side_layout(self) -> int:
        """Symbols of one image's side string (ideal: raw packed PMFs, 4 bytes per value)."""
        return self.pdf.M * self.bins if self.ideal else self.pdf.entropy_bottleneck.channels * self.pdf.q_length

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

    @torch.no_grad()
    def check_adapted_strings(self, coded: list[bytes], side: list[bytes], n_symbols: int, group: int,
                              what: str) -> None:
        """ValueError when a string coded under the per-image tables (one per image) is shorter than its
        ``n_symbols`` allow under the tables that image's side string gives: q is decoded first (a few hundred
        symbols, with the decoder's slack), then each string is bounded (entropy.bounds)."""
        from compresslab.entropy.bounds import min_string_bytes, rans_slack

        side = [s + bytes(rans_slack(len(s), self.side_layout())) for s in side]
        pmfs = self.decode_pmf(self.pdf.entropy_bottleneck.decompress(side, (self.pdf.q_length,)))
        for i, s in enumerate(coded):
            with self._swapped_tables(self._tables(pmfs[i])) as eb:
                least = min_string_bytes(n_symbols, eb)
            if len(s) < least:
                raise ValueError(f"string group {group} holds {len(s)} bytes, but the {what} the header asks for "
                                 f"need at least {least} under the tables its side information gives")


def pack_pmf(pmf: Tensor) -> bytes:
    """Ideal mode's oracle PMF (not counted as bits): the 2^-24 grid values as uint32."""
    ints = torch.round(pmf * PMF_GRID).to(torch.int64).flatten().tolist()
    return struct.pack(f"<{len(ints)}I", *ints)


def unpack_pmf(data: bytes, m: int, bins: int) -> Tensor:
    if len(data) != 4 * m * bins:
        raise ValueError(f"oracle PMF string is {len(data)} bytes, expected {4 * m * bins}")
    ints = struct.unpack(f"<{m * bins}I", data)
    return torch.tensor(ints, dtype=torch.float64).reshape(m, bins) / PMF_GRID
