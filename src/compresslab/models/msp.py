"""Multi-scale progressive (MSP) probability model (Zhang et al. 2022, arXiv 2210.04112), spec msp-and-lof.md.

The latent y (stride 16) is split into S+1 scales by fixed subsampling, y^(s+1) = y^(s)[..., 1::2, 1::2]. The
coarsest scale is coded with a factorized EntropyBottleneck. Each finer scale already knows its [1::2, 1::2]
positions (they are the coarser scale); the others are coded in P spatial steps over (bh x bw) blocks, each step
split into K+1 channel sub-steps (channels 0..K-1 one at a time, then the rest together). One parameter network,
shared by every step and scale, sees the current latent (undecoded positions hold the nearest-neighbour upsample of
the coarser scale), the per-channel "decoded" mask and a recurrent context tensor carried across steps (upsampled
between scales by conv + PixelShuffle), and predicts Gaussian means and scales; CompressAI's GaussianConditional and
its scale table code the symbols round(y - mean). Decoding takes exactly S * P * (K+1) network evaluations plus the
coarsest decode, whatever the image size.

Provenance ([C] Nokia's public "PMS" code, [D] our defaults; see the spec): subsampling, scales, block orders,
channel sub-steps, network layout, Gaussian family and the scale table are [C]. The Cheng2020-anchor-style residual
transforms at stride 16 (N=M=192) are [D] (the paper's transforms were not retrievable), as are the profile names
`fast` (9 steps) and `normal` (27; the code's base row); `extra` (120) is named in [C].

Determinism: at coding time the parameter network runs as a float64 copy on the CPU, whatever device the model is
on, and the predicted means and scales are rounded to a 2^-8 grid before they index the CDF tables and shift the
symbols. The grid alone was not enough: float32 on a GPU vs a CPU moved values across grid points and a GPU-encoded
file decoded to garbage on the CPU for 24/24 Kodak images (benchmarks/cross_device_decode.py). Decoding in another
process is tested bit-exact; GPU->CPU is measured by that benchmark.
"""

from __future__ import annotations

import copy

from typing import Any, Callable

import torch
import torch.nn.functional as F
from compressai.ans import BufferedRansEncoder, RansDecoder
from compressai.entropy_models import EntropyBottleneck, GaussianConditional
from compressai.layers import ResidualBlock, ResidualBlockUpsample, ResidualBlockWithStride, conv3x3, subpel_conv3x3
from compressai.models import CompressionModel, FactorizedPrior
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from compresslab.entropy.deterministic import SCALE_GRID, float64_cpu_copy, to_grid
from compresslab.entropy.ste import coded_gaussian_likelihood, eb_likelihood, gaussian_likelihood, ste_round
from compresslab.models.base import CompressLabModel
from compresslab.models.registry import register_model

PROFILES: dict[str, dict[str, Any]] = {
    "fast": {"scales": 3, "block": (2, 2), "seeds": 0, "filters": 64, "resblocks": 5},     # 3*3*1 = 9 steps
    "normal": {"scales": 3, "block": (2, 2), "seeds": 2, "filters": 64, "resblocks": 5},   # 3*3*3 = 27
    "extra": {"scales": 4, "block": (2, 4), "seeds": 4, "filters": 128, "resblocks": 5},  # 4*6*5 = 120
}
#: decoding order of the unknown positions of a block ([1::2, 1::2] positions are the coarser scale)
ORDERS = {(2, 2): [(0, 0), (0, 1), (1, 0)], (2, 4): [(1, 2), (1, 0), (0, 3), (0, 1), (0, 2), (0, 0)]}
TRANSFORMS = ("cheng_anchor", "gdn")


def _q(t: Tensor) -> Tensor:
    return to_grid(t, SCALE_GRID)


class _ResBlockPReLU(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.conv1, self.act1 = conv3x3(ch, ch), nn.PReLU(ch)
        self.conv2, self.act2 = conv3x3(ch, ch), nn.PReLU(ch)

    def forward(self, x: Tensor) -> Tensor:
        return self.act2(x + self.conv2(self.act1(self.conv1(x))))


class ParameterNetwork(nn.Module):
    """(latent, decoded mask, context) -> (new context, Gaussian means and scales)."""

    def __init__(self, M: int, filters: int, resblocks: int):
        super().__init__()
        self.head = nn.Sequential(conv3x3(2 * M + filters, filters), nn.PReLU(filters))
        self.body = nn.Sequential(*[_ResBlockPReLU(filters) for _ in range(resblocks)])
        self.to_context = conv3x3(filters, filters)
        self.to_params = conv3x3(filters, 2 * M)

    def forward(self, latent: Tensor, mask: Tensor, context: Tensor) -> tuple[Tensor, Tensor]:
        h = self.body(self.head(torch.cat([latent, mask, context], dim=1)))
        return self.to_context(h), self.to_params(h)


@register_model("msp")
class MSP(CompressLabModel, CompressionModel):

    def __init__(self, N: int = 192, M: int = 192, profile: str = "normal", scales: int | None = None,
                 block: tuple[int, int] | list[int] | None = None, seeds: int | None = None,
                 filters: int | None = None, resblocks: int | None = None, grad_checkpoint: bool = False,
                 transform: str = "cheng_anchor"):
        super().__init__()
        if transform not in TRANSFORMS:
            raise ValueError(f"unknown model.transform {transform!r}; use one of {list(TRANSFORMS)}")
        if profile not in PROFILES:
            raise ValueError(f"unknown MSP profile {profile!r}; use one of {sorted(PROFILES)}")
        p = dict(PROFILES[profile])
        for k, v in (("scales", scales), ("block", block), ("seeds", seeds), ("filters", filters),
                     ("resblocks", resblocks)):
            if v is not None:
                p[k] = v
        self.scales, self.block, self.seeds = int(p["scales"]), tuple(p["block"]), int(p["seeds"])
        if self.block not in ORDERS:
            raise ValueError(f"model.block must be one of {sorted(ORDERS)}, got {self.block}")
        if not 0 <= self.seeds < M:
            raise ValueError(f"model.seeds={self.seeds} must be in [0, M={M})")
        self.M, self.filters = M, int(p["filters"])
        # S halvings of a stride-16 latent must leave at least one element: pad images to 16 * 2^S (>= 64)
        self.pad_multiple = self.min_crop({"scales": self.scales})
        self.grad_checkpoint = grad_checkpoint
        self.hparams_dict = {"N": N, "M": M, "profile": profile, "transform": transform, **p}
        self.g_a, self.g_s = _transforms(transform, N, M)
        self.entropy_bottleneck = EntropyBottleneck(M)
        self.gaussian_conditional = GaussianConditional(None)
        self.net = ParameterNetwork(M, self.filters, int(p["resblocks"]))
        self.context_up = nn.Sequential(conv3x3(self.filters, 4 * self.filters), nn.PixelShuffle(2))
        self.network_evaluations = 0  # counted per call of the parameter network

    @classmethod
    def min_crop(cls, cfg) -> int:
        """S halvings of the stride-16 latent must leave one element: 16 * 2^S px (fast/normal 128, extra 256)."""
        scales = cfg.get("scales") or PROFILES[cfg.get("profile", "normal")]["scales"]
        return max(64, 16 * 2 ** int(scales))

    @property
    def steps_per_scale(self) -> int:
        return len(ORDERS[self.block]) * (self.seeds + 1)

    @property
    def sequential_steps(self) -> int:
        """Network evaluations to decode any image: S * P * (K + 1)."""
        return self.scales * self.steps_per_scale

    # -- the schedule shared by training, estimation, encoding and decoding --------------------------------------
    def _subsample(self, y: Tensor) -> list[Tensor]:
        if min(y.shape[-2:]) < 2**self.scales:
            raise ValueError(f"latent {tuple(y.shape[-2:])} is too small for {self.scales} MSP scales: images need at "
                             f"least {16 * 2**self.scales} px per side (training: data.patch_size >= "
                             f"{16 * 2**self.scales}; evaluation pads to a multiple of {self.pad_multiple})")
        ys = [y]
        for _ in range(self.scales):
            ys.append(ys[-1][..., 1::2, 1::2])
        return ys

    def _step(self, net: nn.Module, latent: Tensor, mask: Tensor, context: Tensor) -> tuple[Tensor, Tensor]:
        if not torch.compiler.is_compiling():  # a Python int in a compiled step is a guard: a recompile per step
            self.network_evaluations += 1
        if self.grad_checkpoint and self.training and torch.is_grad_enabled():
            return checkpoint(net, latent, mask, context, use_reentrant=False)
        return net(latent, mask, context)

    def _coding_nets(self) -> tuple[nn.Module, nn.Module, GaussianConditional]:
        """Float64 CPU copies of the parameter network and the context upsampler for entropy coding. Means and scales
        pick the CDF tables, so encoder and decoder must compute them identically: float32 convolutions differ
        between devices (TF32 and other kernels on GPUs, thread counts and ISAs on CPUs), and before this a file
        encoded on a GPU decoded to garbage on a CPU (24/24 Kodak images). Float64 on CPU, then the 2^-8 grid,
        leaves a mismatch only where a float64 rounding difference straddles a grid point."""
        return (float64_cpu_copy(self.net), float64_cpu_copy(self.context_up),
                copy.deepcopy(self.gaussian_conditional).cpu())  # its scale bound and table, for build_indexes

    def _progressive(self, coarse: Tensor, shapes: list[tuple[int, int]],
                     code: Callable[[int, Tensor, Tensor, Tensor], tuple[Tensor, Tensor | None]],
                     nets: tuple[nn.Module, nn.Module] | None = None):
        """Run the S*P*(K+1) steps from the coarsest latent to scale 0. ``code(s, sel, means, scales)`` returns the
        values of the selected elements (and their likelihoods, or None). Returns (y_hat at scale 0, likelihoods).
        ``nets`` replaces (parameter network, context upsampler), e.g. by the float64 coding copies."""
        net, context_up = nets[:2] if nets else (self.net, self.context_up)
        n, m = coarse.shape[:2]
        y_hat, context = coarse, coarse.new_zeros(n, self.filters, *coarse.shape[-2:])
        likelihoods: dict[str, Tensor] = {}
        bh, bw = self.block
        for s in reversed(range(self.scales)):
            h, w = shapes[s]
            # nearest-neighbour x2 (replicate-padded for odd sizes) also puts the known values at [1::2, 1::2]
            latent = _fit(y_hat.repeat_interleave(2, -2).repeat_interleave(2, -1), h, w)
            rows = torch.arange(h, device=coarse.device)[:, None]
            cols = torch.arange(w, device=coarse.device)[None, :]
            mask = ((rows % 2 == 1) & (cols % 2 == 1)).to(latent.dtype).expand(n, m, h, w).clone()
            context = _fit(context_up(context), h, w)
            lik = torch.ones_like(latent)
            for di, dj in ORDERS[self.block]:
                pos = (rows % bh == di) & (cols % bw == dj)
                for k in range(self.seeds + 1):
                    chans = torch.zeros(m, dtype=torch.bool, device=coarse.device)
                    if k < self.seeds:
                        chans[k] = True          # a seed channel on its own
                    else:
                        chans[self.seeds:] = True  # then all remaining channels together
                    sel = (chans[:, None, None] & pos[None]).expand(n, m, h, w)
                    context, params = self._step(net, latent, mask, context)
                    means, scales = params.chunk(2, dim=1)
                    values, l = code(s, sel, means, scales)
                    latent = torch.where(sel, values, latent)
                    mask = torch.where(sel, torch.ones_like(mask), mask)
                    if l is not None:
                        lik = torch.where(sel, l, lik)
            likelihoods[f"y{s}"] = lik
            y_hat = latent
        return y_hat, likelihoods

    # -- training and estimation ---------------------------------------------------------------------------------
    def forward(self, x: Tensor) -> dict[str, Any]:
        y = self.g_a(x)
        if self.training:
            y_tilde = y + torch.empty_like(y).uniform_(-0.5, 0.5)  # one noisy latent: context and synthesis agree
            ys = self._subsample(y_tilde)

            def code(s, sel, means, scales):
                return ys[s], gaussian_likelihood(self.gaussian_conditional, ys[s], scales, means)

            coarse = ys[-1]
            y_hat, lik = self._progressive(coarse, [t.shape[-2:] for t in ys[:-1]], code)
            lik["coarse"] = eb_likelihood(self.entropy_bottleneck, coarse)
            return {"x_hat": self.g_s(y_hat), "likelihoods": lik}
        return self.latent_forward({"y": y}, ste=False)

    def encode_latents(self, x: Tensor) -> dict[str, Tensor]:
        return {"y": self.g_a(x)}

    def latent_forward(self, latents: dict[str, Tensor], ste: bool = True) -> dict[str, Any]:
        """Hard-quantised rates exactly as coded (rounded parameters), straight-through gradients (for LOF)."""
        ys = self._subsample(latents["y"])
        rnd = ste_round if ste else (lambda t, off=None: t.round() if off is None else (t - off).round() + off)
        coarse = rnd(ys[-1], self.entropy_bottleneck._get_medians())

        def code(s, sel, means, scales):
            mq = _q(means)
            values = rnd(ys[s], mq)
            return values, coded_gaussian_likelihood(self.gaussian_conditional, values, _q(scales), mq)

        y_hat, lik = self._progressive(coarse, [t.shape[-2:] for t in ys[:-1]], code)
        lik["coarse"] = eb_likelihood(self.entropy_bottleneck, coarse)
        return {"x_hat": self.g_s(y_hat), "likelihoods": lik}

    # -- coding ----------------------------------------------------------------------------------------------------
    def _tables(self):
        gc = self.gaussian_conditional
        return gc._quantized_cdf.tolist(), gc._cdf_length.reshape(-1).int().tolist(), gc._offset.reshape(-1).int().tolist()


    @torch.no_grad()
    def compress_latents(self, latents: dict[str, Tensor]) -> dict[str, Any]:
        y = latents["y"]
        strings_g, strings_c, y_hats = [], [], []
        cdf, lengths, offsets = self._tables()
        nets = self._coding_nets()
        for i in range(y.shape[0]):
            ys = self._subsample(y[i: i + 1])
            eb = self.entropy_bottleneck
            strings_c += eb.compress(ys[-1])
            coarse = eb.quantize(ys[-1], "dequantize", eb._get_medians()).to("cpu", torch.float64)
            ys = [t.to("cpu", torch.float64) for t in ys]
            encoder = BufferedRansEncoder()

            def code(s, sel, means, scales, ys=ys, encoder=encoder):
                mq = _q(means)
                symbols = torch.round(ys[s] - mq)
                indexes = nets[2].build_indexes(_q(scales))
                encoder.encode_with_indexes(symbols[sel].int().tolist(), indexes[sel].int().tolist(), cdf, lengths,
                                            offsets)
                return symbols + mq, None

            self.network_evaluations = 0
            y_hat, _ = self._progressive(coarse, [t.shape[-2:] for t in ys[:-1]], code, nets)
            strings_g.append(encoder.flush())
            y_hats.append(y_hat.to(y))
        return {"strings": [strings_g, strings_c], "shape": y.shape[-2:],
                "latents": {"y": torch.cat(y_hats)}, "report": {"network_evaluations": self.network_evaluations}}

    def string_layout(self, shape):
        # the progressive string codes the elements above the coarsest scale (M*h*w bounds them); the coarse
        # string is S halvings down, as decompress builds it
        h, w = int(shape[0]) >> self.scales, int(shape[1]) >> self.scales
        return [[self.M * int(shape[0]) * int(shape[1])], [self.entropy_bottleneck.channels * h * w]]

    def string_tables(self):  # the progressive string's count is an upper bound
        return [None, self.entropy_bottleneck]

    @torch.no_grad()
    def decompress(self, strings, shape) -> dict[str, Any]:
        strings_g, strings_c = strings
        h, w = int(shape[0]), int(shape[1])
        shapes = [(h, w)]
        for _ in range(self.scales):
            shapes.append((shapes[-1][0] // 2, shapes[-1][1] // 2))
        cdf, lengths, offsets = self._tables()
        nets = self._coding_nets()
        y_hats = []
        for sg, sc in zip(strings_g, strings_c):
            coarse = self.entropy_bottleneck.decompress([sc], shapes[-1])
            dtype, device = coarse.dtype, coarse.device
            coarse = coarse.to("cpu", torch.float64)
            decoder = RansDecoder()
            decoder.set_stream(sg)

            def code(s, sel, means, scales, decoder=decoder):
                mq = _q(means)
                indexes = nets[2].build_indexes(_q(scales))
                symbols = decoder.decode_stream(indexes[sel].int().tolist(), cdf, lengths, offsets)
                values = torch.zeros_like(means)
                values[sel] = torch.tensor(symbols, dtype=means.dtype, device=means.device)
                return values + mq, None

            self.network_evaluations = 0
            y_hat, _ = self._progressive(coarse, shapes[:-1], code, nets)
            y_hats.append(y_hat.to(device, dtype))
        y_hat = torch.cat(y_hats)
        return {"x_hat": self.g_s(y_hat).clamp_(0, 1), "latents": {"y": y_hat},
                "network_evaluations": self.network_evaluations}


def _transforms(kind: str, N: int, M: int) -> tuple[nn.Module, nn.Module]:
    """Stride-16 analysis/synthesis. "cheng_anchor" (default, [D]): Cheng2020-anchor residual blocks. "gdn": the
    scale hyperprior's conv+GDN transforms (Balle et al. 2018), so MSP and the hyperprior differ only in the entropy
    model; this is what the CPU comparison uses (and it is 3-4x cheaper to train on a CPU)."""
    if kind == "gdn":  # CompressAI's own modules (FactorizedPrior and ScaleHyperprior build the same g_a/g_s)
        ref = FactorizedPrior(N, M)
        return ref.g_a, ref.g_s
    g_a = nn.Sequential(
        ResidualBlockWithStride(3, N, 2), ResidualBlock(N, N), ResidualBlockWithStride(N, N, 2),
        ResidualBlock(N, N), ResidualBlockWithStride(N, N, 2), ResidualBlock(N, N), conv3x3(N, M, stride=2))
    g_s = nn.Sequential(
        ResidualBlock(M, N), ResidualBlockUpsample(N, N, 2), ResidualBlock(N, N), ResidualBlockUpsample(N, N, 2),
        ResidualBlock(N, N), ResidualBlockUpsample(N, N, 2), ResidualBlock(N, N), subpel_conv3x3(N, 3, 2))
    return g_a, g_s


def _fit(t: Tensor, h: int, w: int) -> Tensor:
    """Crop or replicate-pad (right/bottom) to (h, w)."""
    t = t[..., :h, :w]
    ph, pw = h - t.shape[-2], w - t.shape[-1]
    if ph or pw:
        t = F.pad(t, (0, pw, 0, ph), mode="replicate")
    return t
