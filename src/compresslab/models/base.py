"""The contract every registered CompressLab model declares: the methods general code calls (abstract, so a model
that lacks one cannot be registered) and every attribute general code reads, with its default. General code asks the
contract, never the model's type (no ``getattr(model, "x", default)`` outside ``pad_multiple_of``).

Latent interface (one code path for latent overfitting and for coding):
- ``encode_latents(x)``: the continuous latents the encoder would quantise (y, and z for hyperprior models);
- ``latent_forward(latents)``: their hard-quantised rate terms and reconstruction, straight-through gradients;
- ``compress_latents(latents)``: the bitstream for given latents (read back by ``decompress``);
- ``decompress(strings, shape)``: ``{"x_hat", "latents"}`` from what ``compress`` returned;
- ``string_layout(shape)``: the strings a file must hold and how many symbols each decodes (the decoder's schema
  and its memory bound); ``string_tables()`` and ``check_strings`` derive the least bytes a string can hold.
Training interface: ``training_losses(batch, criterion)`` (default: images through ``forward``),
``training_objective`` ("rd", or "rate" when D is constant), ``latent_cache_spec()`` (None, or the frozen
analysis transform and crops per image for training on cached latents).
Naming: ``curve_label(cfg)`` (the RD curve a model config's points join: an oracle variant must not join the real
model's curve), ``check_config(cfg)`` (one-line refusals of impossible settings, before any work).
A model built on a trained base declares ``requires_base_ckpt`` and ``base_model`` (``base_model_of(cfg)`` when the
config picks it); one with a CompressAI twin declares ``compressai_arch`` (zoo weights load into it).
"""

from __future__ import annotations

import abc
from typing import Any, Mapping

import torch

from compresslab.errors import ConfigError

DEFAULT_PAD_MULTIPLE = 64  # CompressAI's convention for its own models (four stride-2 stages plus hyper stages)


class ModelContractError(ConfigError):
    """A class registered as a model that does not satisfy CompressLabModel (raised at import; the entry points
    print it as one line, like any config that cannot work)."""


def pad_multiple_of(model) -> int:
    """What images are padded to before coding: the contract's value, or CompressAI's 64 for a plain CompressAI
    model (evaluation also runs CompressAI's own classes as a reference)."""
    return int(getattr(model, "pad_multiple", DEFAULT_PAD_MULTIPLE))


class CompressLabModel(abc.ABC):
    """Mixed into a CompressAI ``CompressionModel`` subclass (``class M(CompressLabModel, CompressionModel)``)."""

    registry_name: str = ""                        # set by register_model
    pad_multiple: int = DEFAULT_PAD_MULTIPLE
    requires_base_ckpt: bool = False
    base_model: str | None = None                  # the registered model a base checkpoint must hold
    compressai_arch: str | None = None             # CompressAI's zoo architecture with the same state dict
    cache_latents: bool = False                    # train on cached latents of a frozen analysis transform
    free_string_groups: frozenset[int] = frozenset()  # string groups the evaluator does not count (oracle side info)
    raw_string_groups: frozenset[int] = frozenset()   # string groups that are not rANS streams (no decoder slack)
    training_objective: str = "rd"                 # "rate": D is a constant of the batch (frozen decoder), R alone
    hparams_dict: dict[str, Any] = {}              # constructor sizes a checkpoint records (instances set their own)
    rate_lambdas: tuple[float, ...] = ()           # a variable-rate model's lambda per rate point (one curve)

    # -- the latent interface: every model implements these ----------------------------------------------------
    @abc.abstractmethod
    def encode_latents(self, x) -> dict[str, Any]:
        """The continuous latents the encoder would quantise."""

    @abc.abstractmethod
    def latent_forward(self, latents: dict[str, Any]) -> dict[str, Any]:
        """``{"x_hat", "likelihoods"[, "rate_weights"]}`` for given latents, hard-quantised with straight-through
        gradients. ``rate_weights`` (optional) scales individual likelihood keys in the loss."""

    @abc.abstractmethod
    def compress_latents(self, latents: dict[str, Any]) -> dict[str, Any]:
        """``{"strings", "shape", "latents"[, "report"]}``: the bitstream for given latents; ``report`` (optional)
        holds per-image numbers the evaluator records beside bpp/PSNR."""

    @abc.abstractmethod
    def decompress(self, strings, shape) -> dict[str, Any]:
        """``{"x_hat", "latents"}`` from the strings and shape ``compress`` returned."""

    @abc.abstractmethod
    def string_layout(self, shape) -> list[list[int]]:
        """For a file whose header says ``shape``: one list per string group (CompressAI's ``strings``), with the
        number of symbols the entropy decoder will read for each string of one image (an upper bound where the model
        decodes a data-dependent subset). A file with any other layout is refused before decoding, and the symbol
        counts size the decoder's read slack and its memory estimate (bitstream.codec)."""

    # -- declared with defaults --------------------------------------------------------------------------------
    @classmethod
    def curve_label(cls, cfg: Mapping[str, Any]) -> str:
        """The curve this model config's RD points belong to (default: the registered name)."""
        return cls.registry_name

    @classmethod
    def check_config(cls, cfg: Mapping[str, Any], max_steps: int) -> None:
        """Raise ConfigError (one line) for a model config that cannot work; called before any work starts."""

    @classmethod
    def base_model_of(cls, cfg: Mapping[str, Any]) -> str | None:
        """The registered model a base checkpoint must hold for this model config (default: ``base_model``; the
        adaptive model takes it from ``model.base_model``)."""
        return cls.base_model

    def set_rate_point(self, k: int) -> None:
        """Code at rate point k of ``rate_lambdas`` (variable-rate models only)."""
        raise ValueError(f"{type(self).__name__} has one rate point; set_rate_point is for variable-rate models")

    def latent_cache_spec(self) -> tuple[torch.nn.Module, int] | None:
        """(frozen analysis transform, crops per image) when this model trains on cached latents, else None."""
        return None

    @classmethod
    def smoke_width(cls, cfg: Mapping[str, Any]) -> int:
        """``debug=smoke``'s latent width M for this model, given its name (and arch) and smoke's N (32): 48 unless
        the architecture ties M to N or needs more (the ``${model_smoke_M:}`` resolver)."""
        return 48

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

    def string_tables(self) -> list:
        """Per string group, the entropy model whose CDF tables code it with a symbol count that string_layout
        gives exactly, or None (tables chosen per image, or counts that are upper bounds): the decoder derives from
        it the fewest bytes such a string can hold (bitstream.codec.min_string_bytes). Default: none."""
        return [None] * len(self.string_layout((1, 1)))

    def check_strings(self, strings, shape) -> None:
        """ValueError when a string is shorter than the symbols the header asks for allow (entropy.bounds, with the
        tables of string_tables): the decoder calls this before the entropy decoder reads anything."""
        from compresslab.entropy.bounds import min_string_bytes

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


REQUIRED_METHODS = tuple(sorted(CompressLabModel.__abstractmethods__))


def check_contract(name: str, cls: type) -> None:
    """ModelContractError naming everything ``cls`` lacks, so a broken model fails where it is registered."""
    from compressai.models import CompressionModel

    where = f"model {name!r} ({cls.__module__}.{cls.__qualname__})"
    if not (isinstance(cls, type) and issubclass(cls, CompressLabModel) and issubclass(cls, CompressionModel)):
        raise ModelContractError(f"{where} must subclass compresslab.models.CompressLabModel and a CompressAI "
                                 f"CompressionModel: class {cls.__name__}(CompressLabModel, CompressionModel)")
    missing = sorted(getattr(cls, "__abstractmethods__", ()))
    if missing:
        raise ModelContractError(f"{where} does not implement {', '.join(missing)} (the latent interface of "
                                 f"compresslab.models.CompressLabModel)")
    if not isinstance(cls.pad_multiple, int) or cls.pad_multiple <= 0:
        raise ModelContractError(f"{where}: pad_multiple must be a positive int, not {cls.pad_multiple!r}")
    if cls.training_objective not in ("rd", "rate"):
        raise ModelContractError(f"{where}: training_objective must be 'rd' or 'rate', not {cls.training_objective!r}")
    if cls.requires_base_ckpt and not cls.base_model:
        raise ModelContractError(f"{where} declares requires_base_ckpt but no base_model (the registered model its "
                                 f"base checkpoint must hold)")
