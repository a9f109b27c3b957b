"""Static controls for the adaptive stage on a base's z (models/adaptive_base.py), as models/adaptive_static.py
gives them for the factorized y: z coded through the stage's own path (support, escape symbol, 2^-24 grid, the
base's own coder) with static per-channel PMFs instead of per-image ones.

- one table fitted on training crops (``fit_static_on_base(..., loo=False)``): no side information;
- leave-one-out on the evaluation images (``loo=True``): image i is coded with the PMF pooled over the other images'
  z symbols, and the table's index travels as a 2-byte side string, counted. The encoder finds an image's table
  from a hash of its z symbol counts; an image outside the fitted set is refused.
Not registered: evaluation objects (compresslab.drivers.adaptive_static_control builds them for a z base)."""

from __future__ import annotations

import hashlib
import math
import struct
from typing import Any

import torch
from torch import Tensor

from compresslab.models.adaptive_base import AdaptiveOnBase
from compresslab.models.adaptive_stage import MIN_LOG2_LIK
from compresslab.models.base import CompressLabModel


class StaticOnBase(AdaptiveOnBase):
    pmfs: Tensor                          # (tables, C, B)
    image_keys: dict[str, int] | None     # None: one table codes every image

    def _counts(self, p: Tensor, positions: int) -> Tensor:
        return torch.round(p.detach().double().cpu() * positions)

    def _index(self, counts: Tensor) -> int:
        if self.image_keys is None:
            return 0
        key = _key(counts)
        if key not in self.image_keys:
            raise KeyError("the leave-one-out control codes only the images it was fitted on (this image's z "
                           "symbols match none of them): fit it on the evaluation set with fit_static_on_base")
        return self.image_keys[key]

    def _pmfs_for(self, z: Tensor) -> tuple[Tensor, list[int]]:
        p = self.histogram(z)
        idx = [self._index(c) for c in self._counts(p, z.shape[-2] * z.shape[-1])]
        return p, idx

    def rates_from_latent(self, z: Tensor, image_hw: tuple[int, int], key: str = "y") -> dict[str, Any]:
        """Estimated rate: cross-entropy of each image's hard histogram under its static table (no side bits)."""
        n, m, h, w = z.shape
        p, idx = self._pmfs_for(z)
        log_p = torch.log(self.pmfs[idx].to(p).clamp_min(1e-30))
        ce_bits = -(p * log_p).sum(-1) / math.log(2)
        lik = torch.exp2((-ce_bits).clamp_min(MIN_LOG2_LIK))[..., None, None].expand(n, m, h, w)
        return {"likelihoods": {key: lik}, "rate_weights": {}, "p": p, "log_p_hat": log_p}

    def compress_latents(self, latents: dict[str, Tensor]) -> dict[str, Any]:
        self._idx = self._pmfs_for(latents["z"])[1]  # side_information below gets the histogram only
        return super().compress_latents(latents)

    @torch.no_grad()
    def side_information(self, p: Tensor) -> tuple[Tensor, list[bytes], None]:
        idx = self._idx
        side = [b"" if self.image_keys is None else struct.pack("<H", k) for k in idx]
        return self.pmfs[idx], side, None

    @torch.no_grad()
    def pmfs_from_side(self, side_strings) -> tuple[Tensor, None]:
        idx = []
        for s in side_strings:
            if self.image_keys is None:
                if s:
                    raise ValueError(f"the static control's side string must be empty, not {len(s)} bytes")
                idx.append(0)
                continue
            if len(s) != 2:
                raise ValueError(f"leave-one-out table index string is {len(s)} bytes, expected 2")
            k = struct.unpack("<H", s)[0]
            if k >= self.pmfs.shape[0]:
                raise ValueError(f"leave-one-out table index {k} is out of range ({self.pmfs.shape[0]} tables)")
            idx.append(k)
        return self.pmfs[idx], None

    def side_layout(self) -> int:
        return 1

    def string_tables(self):  # the side string is a raw index (or empty)
        return super().string_tables()[:-1] + [None]

    def check_strings(self, strings, shape) -> None:
        CompressLabModel.check_strings(self, strings, shape)


def _key(counts: Tensor) -> str:
    q = counts.to(torch.int64).contiguous()
    return hashlib.sha256(repr(tuple(q.shape)).encode() + q.numpy().tobytes()).hexdigest()


@torch.no_grad()
def fit_static_on_base(base_ckpt: str, base_model: str, images, loo: bool = False, N: int = 128, M: int = 192,
                       bins: int = 256, floor: float = 1e-6) -> StaticOnBase:
    """``images``: (3,H,W) tensors (training crops, or the evaluation images as the evaluator loads them for
    ``loo``). One PMF pooled over all of them, or per image the PMF pooled over the others (summed afresh, never
    "all minus mine"); two images with identical z symbol counts are refused for ``loo``."""
    from compresslab.models.adaptive_static import _padded, _pooled_pmf
    from compresslab.models.base_weights import load_base_state

    images = list(images)
    if loo and len(images) < 2:
        raise ValueError("leave-one-out needs at least 2 images (each one is coded with a PMF fitted on the others)")
    state = load_base_state(base_ckpt, base_model, {"N": N, "M": M})
    model = StaticOnBase(N=N, M=M, base_model=base_model, base_state=state, bins=bins).eval()
    counts, keys = [], {}
    for i, x in enumerate(images):
        z = model.encode_latents(_padded(model, x))["z"]
        c = model._counts(model.histogram(z), z.shape[-2] * z.shape[-1])[0]
        if loo and _key(c) in keys:
            raise ValueError(f"images {keys[_key(c)]} and {i} have identical z symbols: leave-one-out cannot "
                             f"tell them apart")
        keys[_key(c)] = i
        counts.append(c)
    if loo:
        model.pmfs = torch.stack([_pooled_pmf(torch.stack([c for j, c in enumerate(counts) if j != i]).sum(0), floor)
                                  for i in range(len(counts))])
        model.image_keys = keys
    else:
        model.pmfs = _pooled_pmf(torch.stack(counts).sum(0), floor)[None]
        model.image_keys = None
    model.raw_string_groups = {model.side_group}
    return model
