"""Per-image, per-channel latent histograms with straight-through gradients (Ulhaq & Bajić 2024, §1.2 of the spec).

Bins have unit width and integer centres -B/2 ... B/2-1 relative to each channel's median, so bin index =
symbol + B/2 where symbol = round(y - median) is exactly what the entropy bottleneck codes.
"""

from __future__ import annotations

import torch
from torch import Tensor


class RangeBoundFunction(torch.autograd.Function):
    """Clamp to [lo, hi]; inside the range gradients pass, outside only those that move the value back inside."""

    @staticmethod
    def forward(ctx, x: Tensor, lo: float, hi: float) -> Tensor:
        ctx.save_for_backward(x)
        ctx.lo, ctx.hi = lo, hi
        return x.clamp(lo, hi)

    @staticmethod
    def backward(ctx, grad: Tensor):
        (x,) = ctx.saved_tensors
        inside = (x >= ctx.lo) & (x <= ctx.hi)
        # gradient descent moves x by -grad: above the range only grad > 0 moves inward, below only grad < 0
        inward = ((x > ctx.hi) & (grad > 0)) | ((x < ctx.lo) & (grad < 0))
        return grad * (inside | inward), None, None


def range_bound(x: Tensor, lo: float, hi: float) -> Tensor:
    return RangeBoundFunction.apply(x, lo, hi)


def clip_range(bins: int, bound_factor: float = 0.75) -> tuple[float, float]:
    """The clip interval: ``bound_factor`` of the bin range around its centre (-0.5 for even B)."""
    centre = -0.5 if bins % 2 == 0 else 0.0
    half = bound_factor * (bins - 1) / 2
    return centre - half, centre + half


def histogram(u: Tensor, bins: int) -> Tensor:
    """PMF over ``bins`` unit bins of centred values ``u`` (n, C, *spatial), already inside the bin range.

    Forward: hard counts (nearest bin = rounding, what the coder sees). Backward: the triangular kernel
    max(0, 1 - |u - c|), i.e. each sample splits its unit mass between its two nearest bins.
    Returns (n, C, bins), each row summing to 1.
    """
    n, c = u.shape[:2]
    flat = u.reshape(n, c, -1) + bins // 2  # bin-index space
    count = flat.shape[-1]
    lo = flat.detach().floor().clamp(0, bins - 1)
    frac = flat - lo
    hi = (lo + 1).clamp(max=bins - 1)
    zeros = flat.new_zeros(n, c, bins)
    soft = zeros.scatter_add(-1, lo.long(), 1 - frac).scatter_add(-1, hi.long(), frac)
    hard = zeros.scatter_add(-1, flat.detach().round().clamp(0, bins - 1).long(), torch.ones_like(flat))
    return (soft + (hard - soft).detach()) / count
