"""``model=adaptive`` on a factorized base (the paper's setting): the stage (models/adaptive_stage.py) on y, with
g_a, g_s and the base EntropyBottleneck adopted from a trained factorized checkpoint and frozen by default. With
``model.base_model`` naming another base, the constructor builds the stage on that base's z instead
(models/adaptive_base.py). Overview: models/adaptive.py.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from compressai.models import CompressionModel
from torch import Tensor

from compresslab.entropy.ste import ste_round
from compresslab.models.adaptive_stage import KODAK_PIXELS, AdaptiveStage
from compresslab.models.base import CompressLabModel
from compresslab.models.factorized import Factorized
from compresslab.models.registry import register_model

@register_model("adaptive")
class AdaptiveFactorized(AdaptiveStage, CompressLabModel, CompressionModel):
    requires_base_ckpt = True
    base_model = "factorized"  # model.base_ckpt must hold one; registry.build loads it into ``base_state``

    def __new__(cls, *args, base_model: str | None = None, **kwargs):
        # model.base_model=<a hyperprior-family model>: the stage on its z (a class of its own, same config name)
        if base_model not in (None, "factorized"):
            from compresslab.models.adaptive_base import AdaptiveOnBase

            return AdaptiveOnBase(*args, base_model=base_model, **kwargs)
        return super().__new__(cls)

    def __init__(self, N: int = 128, M: int = 192, base_state: Mapping[str, Tensor] | None = None,
                 freeze_base: bool = True,
                 bins: int = 256, Nq: int = 32, Mq: int = 16, kernel: int = 15, groups: int = 8,
                 bound_factor: float = 0.75, ideal: bool = False, lambda_q: float | None = None,
                 target_pixels: int = KODAK_PIXELS, cache_latents: bool = True, cache_crops_per_image: int = 4,
                 base_model: str | None = None):
        super().__init__()
        base = Factorized(N, M)
        if base_state is not None:
            base.load_state_dict(base_state)
        self.g_a, self.g_s, self.entropy_bottleneck = base.g_a, base.g_s, base.entropy_bottleneck
        self._init_stage(M, bins, Nq, Mq, kernel, groups, bound_factor, ideal, lambda_q, target_pixels)
        self.M = M
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
    def base_model_of(cls, cfg: Mapping[str, Any]) -> str:
        return str(cfg.get("base_model") or cls.base_model)

    @classmethod
    def curve_label(cls, cfg) -> str:
        # oracle points (zero side bits) must never join the real model's curve; nor the stage on another base's z
        base = cls.base_model_of(cfg)
        name = cls.registry_name if base == cls.base_model else f"{cls.registry_name}-{base}"
        return f"{name}-ideal" if cfg.get("ideal") else name

    @classmethod
    def check_config(cls, cfg, max_steps: int) -> None:
        from compresslab.errors import ConfigError

        if cls.base_model_of(cfg) != cls.base_model:
            from compresslab.models.adaptive_base import check_base_model

            check_base_model(cls.base_model_of(cfg))
        if cfg.get("ideal") and max_steps > 0:
            raise ConfigError("model.ideal=true is the oracle bound (p_hat = p): it has nothing to train; evaluate "
                              "it with trainer.max_steps=0")

    def latent_cache_spec(self):
        return (self.g_a, self.cache_crops_per_image) if self.cache_latents else None

    # -- training ---------------------------------------------------------------------------------------------
    def training_losses(self, batch, criterion) -> tuple[dict[str, Any], int]:
        if not isinstance(batch, dict):
            return super().training_losses(batch, criterion)
        # cached latents (frozen g_a/g_s, see latent_cache.py): only rates change, D is a constant and omitted
        y = batch["y"]
        h, w = batch["image_hw"]  # Python ints (data.latent_cache.collate_latents): no graph break
        losses = criterion.rate(self.rates_from_latent(y, (h, w)), y.shape[0] * h * w)
        losses["loss"] = losses["bpp_loss"]
        return losses, y.shape[0]

    def forward(self, x: Tensor) -> dict[str, Any]:
        y = self.g_a(x)
        out = self.rates_from_latent(y, tuple(x.shape[-2:]))
        mode = "noise" if self.training and not self.freeze_base else "dequantize"
        y_hat = self.entropy_bottleneck.quantize(y, mode, self.entropy_bottleneck._get_medians())
        out["x_hat"] = self.g_s(y_hat)
        return out

    # -- coding -----------------------------------------------------------------------------------------------
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
        pmfs, side_strings, q_hat = self.side_information(self.histogram(y))
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
        return [[self.M * shape[0] * shape[1]], [self.side_layout()]]

    def string_tables(self):  # y's tables come from the decoded q; ideal side strings are raw
        return [None, None if self.ideal else self.pdf.entropy_bottleneck]

    @torch.no_grad()
    def check_strings(self, strings, shape) -> None:
        """y's tables come from the side information: decode q (a few hundred symbols, with the decoder's slack)
        and bound each y string under the tables it gives."""
        super().check_strings(strings, shape)
        if self.ideal:
            return
        self.check_adapted_strings(strings[0], strings[1], self.M * int(shape[0]) * int(shape[1]), 0,
                                   f"{self.M}x{shape[0]}x{shape[1]} symbols")

    @torch.no_grad()
    def decompress(self, strings, shape) -> dict[str, Any]:
        y_strings, side_strings = strings
        pmfs, q_hat = self.pmfs_from_side(side_strings)
        latents = {} if q_hat is None else {"q": q_hat}
        ys = []
        for i, s in enumerate(y_strings):
            with self._swapped_tables(self._tables(pmfs[i])) as eb:
                ys.append(eb.decompress([s], shape))
        y_hat = torch.cat(ys)
        latents["y"] = y_hat
        return {"x_hat": self.g_s(y_hat).clamp_(0, 1), "latents": latents}
