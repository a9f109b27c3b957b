"""The adaptive stage on the hyper-latent z of a frozen base (``model=adaptive model.base_model=hyperprior``, or
mbt2018-mean, mbt2018): as the released code's ``bmshj2018-hyperprior-pdf`` / ``mbt2018-mean-pdf`` (no results were
published for these), z's static EntropyBottleneck density is replaced per image by p_hat (models/adaptive_stage.py);
y stays coded as the base codes it.

How it codes: per image, the tables built from p_hat are swapped into the base's own z EntropyBottleneck while the
base's own ``compress_latents`` / ``decompress`` run, so y's parameters come from exactly the z_hat the base would
decode, with the base's own coding (deterministic where the base is), and the strings are the base's groups plus one
side-information group. Every base whose encoder returns z and whose ``entropy_bottleneck`` codes it works; the
factorized base (y) is models/adaptive.py. The report states how much the stage can move: ``z_bits`` and
``z_share`` (z bits / all counted bits), beside ``y_bits`` and ``side_bits``.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from compressai.models import CompressionModel
from torch import Tensor

from compresslab.entropy.ste import ste_round
from compresslab.errors import ConfigError
from compresslab.models.adaptive_stage import KODAK_PIXELS, AdaptiveStage
from compresslab.models.base import CompressLabModel
from compresslab.models.registry import get_model_class, model_names


def _families() -> tuple[type, ...]:
    from compresslab.models.compressai_adapters import MeanScaleAdapter
    from compresslab.models.hyperprior import Hyperprior

    return Hyperprior, MeanScaleAdapter  # encode_latents gives z, coded by self.entropy_bottleneck


def z_bases() -> list[str]:
    """Registered models the stage can run on through their z."""
    return [n for n in model_names() if issubclass(get_model_class(n), _families())]


def check_base_model(name: str) -> None:
    """ConfigError (one line) unless ``name`` is a registered model whose z the stage can code."""
    bases = "factorized (its y) or the z of " + ", ".join(z_bases())
    try:
        cls = get_model_class(name)
    except KeyError:
        raise ConfigError(f"model.base_model={name!r} is not a registered model; the adaptive stage runs on "
                          f"{bases}") from None
    if issubclass(cls, _families()):
        return
    from compresslab.models.compressai_adapters import LatentCodecAdapter

    why = ("its z EntropyBottleneck sits inside a CompressAI latent codec, which the stage does not reach yet"
           if issubclass(cls, LatentCodecAdapter) else
           "it codes no hyper-latent z through an EntropyBottleneck (an EntropyBottleneck inside its own coder, as "
           "MSP's for its coarsest scale, is not one the stage can take over)")
    raise ConfigError(f"model.base_model={name}: {why}; the adaptive stage runs on {bases}")


class _HyperLatent(torch.nn.Module):
    """The frozen encoder whose output stage 2 trains on: x -> z (the latent cache stores it under "y")."""

    def __init__(self, base: torch.nn.Module):
        super().__init__()
        self.base = base
        self.train(base.training)

    def forward(self, x: Tensor) -> Tensor:
        return self.base.encode_latents(x)["z"]


class AdaptiveOnBase(AdaptiveStage, CompressLabModel, CompressionModel):
    """Built by ``model=adaptive`` when ``model.base_model`` is not factorized (AdaptiveFactorized.__new__)."""

    requires_base_ckpt = True
    base_model = "hyperprior"
    registry_name = "adaptive"

    def __init__(self, N: int = 128, M: int = 192, base_model: str = "hyperprior",
                 base_state: Mapping[str, Tensor] | None = None, freeze_base: bool = True,
                 bins: int = 256, Nq: int = 32, Mq: int = 16, kernel: int = 15, groups: int = 8,
                 bound_factor: float = 0.75, ideal: bool = False, lambda_q: float | None = None,
                 target_pixels: int = KODAK_PIXELS, cache_latents: bool = True, cache_crops_per_image: int = 4):
        super().__init__()
        check_base_model(base_model)
        base = get_model_class(base_model)(N=N, M=M)
        if base_state is not None:
            base.load_state_dict(base_state)
        self.base = base
        eb = base.entropy_bottleneck
        self._init_stage(eb.channels, bins, Nq, Mq, kernel, groups, bound_factor, ideal, lambda_q, target_pixels)
        self.base_name, self.M = base_model, M
        self.coded_stride, self.pad_multiple = base.coded_stride, base.pad_multiple
        self.z_group = next(i for i, t in enumerate(base.string_tables()) if t is eb)
        self.side_group = len(base.string_layout((1, 1)))
        self.freeze_base = bool(freeze_base)
        self.cache_latents = bool(cache_latents) and self.freeze_base
        self.training_objective = "rate" if self.cache_latents else "rd"
        self.cache_crops_per_image = int(cache_crops_per_image)
        self.free_string_groups = {self.side_group} if self.ideal else set()
        self.raw_string_groups = {self.side_group} if self.ideal else set()
        self.hparams_dict = {"N": N, "M": M, "base_model": base_model, "bins": bins, "Nq": Nq, "Mq": Mq,
                             "ideal": self.ideal}
        if self.freeze_base:
            base.requires_grad_(False)
        if base_state is not None:
            base.update(force=True)  # z's support and medians fixed for the whole training

    @property
    def entropy_bottleneck(self):
        """The EB whose density the stage replaces: the base's z EB (one module, registered under ``base``)."""
        return self.base.entropy_bottleneck

    @property
    def g_s(self):
        """The base's synthesis transform (the file decoder runs it by tiles, swapping it while the entropy decoder
        runs: models.tiling.latent_only); set through to the base, whose decompress calls it."""
        return self.base.g_s

    def __setattr__(self, name: str, value) -> None:
        if name == "g_s":
            self.base.g_s = value
        else:
            super().__setattr__(name, value)

    def latent_cache_spec(self):
        return (_HyperLatent(self.base), self.cache_crops_per_image) if self.cache_latents else None

    # -- rates ------------------------------------------------------------------------------------------------
    def training_losses(self, batch, criterion) -> tuple[dict[str, Any], int]:
        if not isinstance(batch, dict):
            return super().training_losses(batch, criterion)
        z = batch["y"]  # cached z of the frozen base: y's rate and D are constants, omitted
        h, w = batch["image_hw"]  # Python ints (data.latent_cache.collate_latents): no graph break
        losses = criterion.rate(self.rates_from_latent(z, (h, w), key="z"), z.shape[0] * h * w)
        losses["loss"] = losses["bpp_loss"]
        return losses, z.shape[0]

    def _rates(self, latents: dict[str, Tensor], z: Tensor, image_hw: tuple[int, int]) -> dict[str, Any]:
        out = self.base.latent_forward(latents)  # x_hat and y's hard-quantised rate; z's is replaced
        r = self.rates_from_latent(z, image_hw, key="z")
        return {"x_hat": out["x_hat"], "likelihoods": {**out["likelihoods"], **r["likelihoods"]},
                "rate_weights": r["rate_weights"]}

    def forward(self, x: Tensor) -> dict[str, Any]:
        latents = self.encode_latents(x)
        return self._rates(latents, latents["z"], tuple(x.shape[-2:]))

    def encode_latents(self, x: Tensor) -> dict[str, Tensor]:
        return self.base.encode_latents(x)

    def latent_forward(self, latents: dict[str, Tensor]) -> dict[str, Any]:
        """The coding cost: z under p_hat from its rounded histogram (q rounded as coded), y as the base codes it."""
        z = latents["z"]
        z_hat = ste_round(z, self.entropy_bottleneck._get_medians())
        was = self.pdf.training
        self.pdf.eval()
        out = self._rates(latents, z_hat, (z.shape[-2] * self.coded_stride, z.shape[-1] * self.coded_stride))
        self.pdf.train(was)
        return out

    # -- coding -----------------------------------------------------------------------------------------------
    @torch.no_grad()
    def compress_latents(self, latents: dict[str, Tensor]) -> dict[str, Any]:
        pmfs, side_strings, q_hat = self.side_information(self.histogram(latents["z"]))
        encs = []
        for i in range(latents["z"].shape[0]):
            with self._swapped_tables(self._tables(pmfs[i])):  # the base's own coder, z under p_hat's tables
                encs.append(self.base.compress_latents({k: v[i: i + 1] for k, v in latents.items()}))
        groups = [[s for e in encs for s in e["strings"][g]] for g in range(self.side_group)]
        out_latents = {k: torch.cat([e["latents"][k] for e in encs]) for k in encs[0]["latents"]}
        if q_hat is not None:
            out_latents["q"] = q_hat
        bits = [8 * sum(len(s) for s in g) for g in groups]
        side_bits = 0 if self.ideal else 8 * sum(len(s) for s in side_strings)
        total = sum(bits) + side_bits
        report = {"y_bits": total - bits[self.z_group] - side_bits, "z_bits": bits[self.z_group],
                  "side_bits": side_bits, "z_share": bits[self.z_group] / total if total else 0.0}
        return {"strings": groups + [side_strings], "shape": encs[0]["shape"], "latents": out_latents,
                "report": report}

    def string_layout(self, shape):
        return self.base.string_layout(shape) + [[self.side_layout()]]

    def string_tables(self):  # z's tables come from the decoded q; ideal side strings are raw
        tables = list(self.base.string_tables())
        tables[self.z_group] = None
        return tables + [None if self.ideal else self.pdf.entropy_bottleneck]

    @torch.no_grad()
    def check_strings(self, strings, shape) -> None:
        """The base's groups and q as the contract checks them, then each z string bounded under the tables its
        side information gives (decoding q: a few hundred symbols, with the decoder's slack)."""
        super().check_strings(strings, shape)
        if self.ideal:
            return
        n_z = self.base.string_layout(shape)[self.z_group][0]
        self.check_adapted_strings(strings[self.z_group], strings[self.side_group], n_z, self.z_group,
                                   f"{n_z} z symbols")

    @torch.no_grad()
    def decompress(self, strings, shape) -> dict[str, Any]:
        side = strings[self.side_group]
        pmfs, q_hat = self.pmfs_from_side(side)
        decs = []
        for i in range(len(side)):
            with self._swapped_tables(self._tables(pmfs[i])):
                decs.append(self.base.decompress([[g[i]] for g in strings[: self.side_group]], shape))
        latents = {k: torch.cat([d["latents"][k] for d in decs]) for k in decs[0]["latents"]}
        if q_hat is not None:
            latents["q"] = q_hat
        return {"x_hat": torch.cat([d["x_hat"] for d in decs]), "latents": latents}
