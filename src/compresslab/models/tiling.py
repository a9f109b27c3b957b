"""The synthesis transform g_s run tile by tile, so that decoding a large image holds one tile's activations rather
than the whole image's, with pixels bit-identical to one g_s call on the whole latent.

Two things make that exact, not approximate:
- Overlap. Each tile's latent window is widened by the receptive field of g_s (``synthesis_geometry``, from the
  layers: "same" convolutions, transposed convolutions whose output is stride x input, pixel shuffles, pointwise
  layers and CompressAI's local residual/attention blocks), and only the window's interior is kept. Where a tile
  touches the image border, the window stops there, as the whole-image call's zero padding does.
- One convolution algorithm. oneDNN (PyTorch's default CPU convolution) picks its kernels by tensor size, so the same
  output pixel is summed in another order in a smaller tensor (measured: 5 pixels of a 1024^2 decode 1 level off),
  and its results change with the thread count too. ``exact_convolutions`` runs g_s on PyTorch's native
  convolutions, which sum each output in an order that depends on neither (tests/test_tiled_decode.py checks both).
A g_s with a module of unknown reach (a user's block, a global pooling) raises NotTileable and is decoded whole.
"""

from __future__ import annotations

import contextlib
import math

import numpy as np
import torch
from torch import nn

_POINTWISE = (nn.ReLU, nn.LeakyReLU, nn.PReLU, nn.GELU, nn.Sigmoid, nn.Tanh, nn.Identity)


class NotTileable(ValueError):
    """g_s holds a module whose receptive field is not known to be local: decode untiled."""


def _pointwise(m: nn.Module) -> bool:
    from compressai.layers import GDN

    return isinstance(m, _POINTWISE + (GDN,))  # GDN: a 1x1 convolution across channels, per pixel


def _same_conv(m: nn.Conv2d, where: str) -> int:
    if tuple(m.stride) != (1, 1) or isinstance(m.padding, str) and m.padding != "same":
        raise NotTileable(f"{where}: a strided or unpadded Conv2d changes the grid")
    pads = [d * (k - 1) // 2 for k, d in zip(m.kernel_size, m.dilation)] if m.padding == "same" else list(m.padding)
    if any(2 * p != d * (k - 1) for k, p, d in zip(m.kernel_size, pads, m.dilation)):
        raise NotTileable(f"{where}: Conv2d padding {m.padding} is not 'same' for kernel {m.kernel_size}")
    return max(pads)


def _deconv(m: nn.ConvTranspose2d, where: str) -> tuple[int, int]:
    s = m.stride[0]
    if m.stride[0] != m.stride[1]:
        raise NotTileable(f"{where}: ConvTranspose2d with unequal strides {m.stride}")
    radius = 0
    for k, p, op, d in zip(m.kernel_size, m.padding, m.output_padding, m.dilation):
        if d * (k - 1) - 2 * p + op + 1 != s:  # output = stride x input: the grids align tile by tile
            raise NotTileable(f"{where}: ConvTranspose2d output is not {s}x its input")
        # output o sums inputs i with o = i*s - p + d*j, j < k: i within [o/s - (d(k-1)-p)/s, o/s + p/s]
        radius = max(radius, -(-(d * (k - 1) - p) // s), -(-p // s))
    return s, radius


def _chain(mods, where: str) -> tuple[int, int]:
    """(scale, halo) of modules applied in sequence; halo in the first one's input units, rounded up per step."""
    geo = [synthesis_geometry(m, f"{where}.{i}") for i, m in enumerate(mods)]
    halo = 0
    for s, r in reversed(geo):
        halo = r + -(-halo // s)
    return math.prod(s for s, _ in geo), halo


def _local_block_radius(m: nn.Module, where: str) -> int:
    """A same-resolution block whose branches are chains of its convolutions joined by elementwise ops: the sum
    of all its convolutions' radii bounds every branch."""
    from compressai.layers import GDN

    total = 0
    for name, c in m.named_children():
        if isinstance(c, nn.Conv2d):
            total += _same_conv(c, f"{where}.{name}")
        elif _pointwise(c) or isinstance(c, GDN):
            continue
        elif isinstance(c, nn.Sequential) or type(c).__name__ == "ResidualUnit":  # AttentionBlock's inner unit
            total += _local_block_radius(c, f"{where}.{name}")
        else:
            raise NotTileable(f"{where}.{name}: {type(c).__name__} in a residual block")
    return total


def _local_blocks() -> tuple[type, ...]:
    from compressai.layers import AttentionBlock, ResidualBlock
    from compressai.models.sensetime import ResidualBottleneckBlock

    # CompressAI's blocks, exactly (a subclass may change forward); AttentionBlock is Cheng et al.'s local
    # "simplified attention": residual units and a sigmoid gate, no global op
    return (ResidualBlock, AttentionBlock, ResidualBottleneckBlock)


def synthesis_geometry(m: nn.Module, where: str = "g_s") -> tuple[int, int]:
    """(upsampling factor, halo): an output tile of input tile [a, b) needs input [a - halo, b + halo) and lands
    at [a * factor, b * factor). NotTileable (naming the module) for anything not known to be local."""
    from compressai.layers import ResidualBlockUpsample

    if _pointwise(m):
        return 1, 0
    if type(m) is nn.Sequential:
        return _chain(list(m), where)
    if isinstance(m, nn.ConvTranspose2d):
        return _deconv(m, where)
    if isinstance(m, nn.Conv2d):
        return 1, _same_conv(m, where)
    if type(m) is nn.PixelShuffle:
        return m.upscale_factor, 0
    if type(m) in _local_blocks():
        return 1, _local_block_radius(m, where)
    if type(m) is ResidualBlockUpsample:
        main = _chain([m.subpel_conv, m.leaky_relu, m.conv, m.igdn], where)
        skip = synthesis_geometry(m.upsample, f"{where}.upsample")
        return main[0], max(main[1], skip[1])
    raise NotTileable(f"{where}: {type(m).__module__}.{type(m).__name__} has no known receptive field (attention "
                      f"over the whole latent or a global op would make tiles differ)")


@contextlib.contextmanager
def exact_convolutions():
    """PyTorch's native CPU convolutions (oneDNN off): each output summed in one order whatever the tensor size and
    the thread count. Slower than oneDNN for 3x3 stacks (cheng2020-type g_s), about even for 5x5 deconvolutions."""
    before = torch.backends.mkldnn.enabled  # (mkldnn.flags() also resets TF32 settings, with a warning each time)
    torch.backends.mkldnn.enabled = False
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = before


class _Capture(nn.Module):
    """Stands in for g_s during model.decompress: keeps the latent, returns an empty image."""

    def __init__(self):
        super().__init__()
        self.latents: list[torch.Tensor] = []

    def forward(self, y):
        self.latents.append(y)
        return y.new_empty(0)


@contextlib.contextmanager
def latent_only(model):
    """``model.decompress`` decodes the latent but skips g_s; the latent is in the yielded list (one tensor)."""
    g_s, cap = model.g_s, _Capture()
    model.g_s = cap
    try:
        yield cap.latents
    finally:
        model.g_s = g_s


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """What decompress + the codec did to g_s's output: clamp, NaN to 0, 8-bit rounding (elementwise, so a tile at
    a time gives the same bytes)."""
    return (x.clamp_(0, 1).nan_to_num(0.0).clamp(0, 1) * 255).round().byte()


@torch.no_grad()
def synthesize_rgb8(g_s: nn.Module, y: torch.Tensor, box: tuple[int, int, int, int], tile: int = 0) -> np.ndarray:
    """g_s(y) (one image) as (h, w, 3) uint8 for the output box (top, left, h, w), computed ``tile`` latent units
    square at a time (0: one call on the whole latent; any g_s). Peak memory: one tile's activations and the
    output. NotTileable when tile > 0 and g_s is not known to be local."""
    top, left, h, w = box
    out = np.empty((h, w, 3), dtype=np.uint8)
    H, W = y.shape[-2:]
    scale, halo = synthesis_geometry(g_s) if tile > 0 else (None, 0)
    th, tw = (tile, tile) if tile > 0 else (H, W)
    with exact_convolutions():
        for a in range(0, H, th):
            for b in range(0, W, tw):
                a1, b1 = min(a + th, H), min(b + tw, W)
                i0, j0, i1, j1 = max(a - halo, 0), max(b - halo, 0), min(a1 + halo, H), min(b1 + halo, W)
                s = scale or 0
                if tile > 0 and (max(a * s, top) >= min(a1 * s, top + h) or max(b * s, left) >= min(b1 * s, left + w)):
                    continue  # the tile lies in the padding only
                x = g_s(y[..., i0:i1, j0:j1])
                s = scale or x.shape[-1] // W  # untiled: whatever g_s upsamples by
                if tuple(x.shape[-2:]) != ((i1 - i0) * s, (j1 - j0) * s):
                    raise ValueError(f"g_s made {tuple(x.shape[-2:])} pixels of a {(i1 - i0, j1 - j0)} latent")
                # the tile's output rows/cols in image coordinates, clipped to the box
                r0, r1 = max(a * s, top), min(a1 * s, top + h)
                c0, c1 = max(b * s, left), min(b1 * s, left + w)
                part = x[0, :, r0 - i0 * s:r1 - i0 * s, c0 - j0 * s:c1 - j0 * s]
                out[r0 - top:r1 - top, c0 - left:c1 - left] = to_uint8(part).permute(1, 2, 0).numpy()
                del x, part
    return out
