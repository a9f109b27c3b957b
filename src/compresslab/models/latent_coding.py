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
``free_string_groups``, ``raw_string_groups``, ``string_layout(shape)`` (the strings a file must hold and how many
symbols each decodes: the decoder's schema and its memory bound), and ``min_crop(cfg)``: the smallest training crop that gives every latent the size the model needs,
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

    def string_layout(self, shape) -> list[list[int]]:
        """For a file whose header says ``shape``: one list per string group (CompressAI's ``strings``), with the
        number of symbols the entropy decoder will read for each string of one image (an upper bound where the model
        decodes a data-dependent subset). A file with any other layout is refused before decoding, and the symbol
        counts size the decoder's read slack and its memory estimate (evaluation.codec). Models must declare it."""
        raise NotImplementedError(f"{type(self).__name__} does not declare string_layout(shape): files of this model "
                                  f"cannot be checked before decoding")

    def string_tables(self) -> list:
        """Per string group, the entropy model whose CDF tables code it with a symbol count that string_layout
        gives exactly, or None (tables chosen per image, or counts that are upper bounds): the decoder derives from
        it the fewest bytes such a string can hold (evaluation.codec.min_string_bytes). Default: none."""
        return [None] * len(self.string_layout((1, 1)))

    def check_strings(self, strings, shape) -> None:
        """ValueError when a string is shorter than the symbols the header asks for allow (entropy.bounds, with the
        tables of string_tables): the decoder calls this before the entropy decoder reads anything."""
        from ..entropy.bounds import min_string_bytes

        for gi, (g, ns, tables) in enumerate(zip(strings, self.string_layout(shape), self.string_tables())):
            for s, n in zip(g, ns if tables is not None else ()):
                least = min_string_bytes(n, tables)
                if len(s) < least:
                    raise ValueError(f"string group {gi} holds {len(s)} bytes, but the {n} symbols the header asks "
                                     f"for need at least {least} under this model's tables")

    def training_losses(self, batch, criterion) -> tuple[dict[str, Any], int]:
        """The loss terms of one training batch and its size. Default: an image batch through ``forward`` and the
        R + lambda*D criterion; a model trained on something else (the adaptive model's cached latents) overrides
        this, so the training loop never asks what a batch is."""
        return criterion(self(batch), batch), batch.shape[0]

    @torch.no_grad()
    def compress(self, x):
        return self.compress_latents(self.encode_latents(x))
