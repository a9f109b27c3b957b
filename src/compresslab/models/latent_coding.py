"""The latent interface every CompressLab model implements, so latent overfitting has one code path:

- ``encode_latents(x)``: the continuous latents the encoder would quantise (y, and z for hyperprior models);
- ``latent_forward(latents)``: their hard-quantised rate terms and reconstruction, straight-through gradients;
- ``compress_latents(latents)``: the bitstream for given latents (read back by the unchanged ``decompress``).
"""

from __future__ import annotations

import torch


class LatentCodingMixin:
    @torch.no_grad()
    def compress(self, x):
        return self.compress_latents(self.encode_latents(x))
