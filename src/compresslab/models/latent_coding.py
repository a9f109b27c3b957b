"""The contract every registered CompressLab model declares, with defaults, so general code never asks a model
what it is.

Latent interface (one code path for latent overfitting and for coding):
- ``encode_latents(x)``: the continuous latents the encoder would quantise (y, and z for hyperprior models);
- ``latent_forward(latents)``: their hard-quantised rate terms and reconstruction, straight-through gradients;
- ``compress_latents(latents)``: the bitstream for given latents (read back by the unchanged ``decompress``).
Training interface: ``training_losses(batch, criterion)`` (default: images through ``forward``).

Declared attributes: ``pad_multiple`` (evaluation pads images to it; evaluation also accepts plain CompressAI
models, hence its getattr there), ``requires_base_ckpt`` (built on a trained base model), ``cache_latents``,
``base_model`` (which registered model that base is: the base resolution of ``compresslab.bases`` reads it),
``compressai_arch`` (CompressAI's architecture with the same state dict: zoo weights load into it),
``free_string_groups``, ``raw_string_groups``, and ``min_crop(cfg)``: the smallest training crop that gives every latent the size the model needs,
checked before any work (train.validate_config) and used by ``debug=smoke``.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch


class LatentCodingMixin:
    pad_multiple: int = 64
    requires_base_ckpt: bool = False
    base_model: str | None = None                  # the registered model a base checkpoint must hold
    compressai_arch: str | None = None             # CompressAI's zoo architecture with the same state dict
    cache_latents: bool = False                    # train on cached latents of a frozen analysis transform
    free_string_groups: frozenset[int] = frozenset()  # string groups the evaluator does not count (oracle side info)
    raw_string_groups: frozenset[int] = frozenset()   # string groups that are not rANS streams (no decoder slack)

    @classmethod
    def min_crop(cls, cfg: Mapping[str, Any]) -> int:
        """Smallest training crop side for this model config (stride-16 latents: 64 px leaves a 4x4 y)."""
        return 64

    coded_stride: int = 16  # the latent whose size ``compress`` returns as "shape" (the hyperprior's is z: 64)

    def coded_shape(self, height: int, width: int) -> tuple[int, int]:
        """The "shape" ``compress`` returns for an image of this size: a decoder checks a file's header against it
        before allocating anything (a crafted shape must not make it allocate a 4096x4096 latent)."""
        p = self.pad_multiple
        return (-(-height // p) * p // self.coded_stride, -(-width // p) * p // self.coded_stride)

    def training_losses(self, batch, criterion) -> tuple[dict[str, Any], int]:
        """The loss terms of one training batch and its size. Default: an image batch through ``forward`` and the
        R + lambda*D criterion; a model trained on something else (the adaptive model's cached latents) overrides
        this, so the training loop never asks what a batch is."""
        return criterion(self(batch), batch), batch.shape[0]

    @torch.no_grad()
    def compress(self, x):
        return self.compress_latents(self.encode_latents(x))
