"""Every image architecture in ``compressai.registry.MODELS`` as a CompressLab model: ``model=<arch>``
(conf/model/<arch>.yaml) and, for anything registered later (a user's ``@compressai.registry.register_model`` class
in a plugin), ``model=compressai model.arch=<name>``.

The adapter class of an architecture is CompressAI's own class with the family mixin of compressai_adapters in front
(same state-dict keys, same strings). What the adapter cannot code is refused at config time, in one line naming the
architecture and the reason (``refusal``): mbt2018-vbr (variable rate with a serial context), point-cloud and video
models, and classes of no known family. The other ``*-vbr`` models are compressai_vbr's (one rate point per
lambda). bmshj2018-factorized and bmshj2018-hyperprior are the ``factorized`` and ``hyperprior`` models.
"""

from __future__ import annotations

import inspect
from typing import Any, Mapping

from compressai.models import CompressionModel

from compresslab.errors import ConfigError
from compresslab.models.base import CompressLabModel
from compresslab.models.compressai_adapters import AutoregressiveAdapter, LatentCodecAdapter, MeanScaleAdapter
from compresslab.models.registry import register_model

OURS = {"bmshj2018-factorized": "factorized", "bmshj2018-hyperprior": "hyperprior"}  # CompressLab's own twins


def compressai_models() -> dict[str, type]:
    import compressai.registry

    return dict(compressai.registry.MODELS)


def refusal(arch: str, base: type) -> str | None:
    """Why ``arch`` cannot be a CompressLab model (one line), or None."""
    from compressai.models import (FactorizedPrior, JointAutoregressiveHierarchicalPriors, MeanScaleHyperprior,
                                   ScaleHyperprior, SimpleVAECompressionModel)
    from compressai.models.vbr import ScaleHyperpriorVbr

    where = base.__module__
    if ".pointcloud" in where or ".video" in where:
        kind = "point-cloud" if ".pointcloud" in where else "video"
        return f"CompressAI architecture {arch!r} is a {kind} model ({where}.{base.__name__}); CompressLab codes images"
    if issubclass(base, ScaleHyperpriorVbr) and issubclass(base, JointAutoregressiveHierarchicalPriors):
        return (f"CompressAI architecture {arch!r} is variable-rate with a serial context model, which the "
                f"variable-rate adapter does not code (issue 38 item 4: bmshj2018-hyperprior-vbr and "
                f"mbt2018-mean-vbr are); use model=mbt2018-mean-vbr, or model={arch[:-4]} per lambda")
    known = (JointAutoregressiveHierarchicalPriors, MeanScaleHyperprior, SimpleVAECompressionModel, ScaleHyperprior,
             FactorizedPrior)
    if not issubclass(base, known):
        return (f"CompressAI architecture {arch!r} ({where}.{base.__name__}) derives from none of the families the "
                f"adapter codes ({', '.join(c.__name__ for c in known)}); register a CompressLab model for it "
                f"(docs/models.md: 'Your own model')")
    return None


def _mixin(base: type) -> type:
    from compressai.models import (FactorizedPrior, JointAutoregressiveHierarchicalPriors, MeanScaleHyperprior,
                                   ScaleHyperprior)

    from compresslab.models.factorized import Factorized
    from compresslab.models.hyperprior import Hyperprior

    if issubclass(base, JointAutoregressiveHierarchicalPriors):
        return AutoregressiveAdapter
    if issubclass(base, MeanScaleHyperprior):
        return MeanScaleAdapter
    if issubclass(base, ScaleHyperprior):
        return Hyperprior
    if issubclass(base, FactorizedPrior):
        return Factorized
    return LatentCodecAdapter


def _is_vbr(base: type) -> bool:
    from compressai.models.vbr import ScaleHyperpriorVbr

    return issubclass(base, ScaleHyperpriorVbr)


def _takes(base: type, name: str) -> bool:
    return name in inspect.signature(base.__init__).parameters


_CLASSES: dict[str, type] = {}


def adapter_class(arch: str) -> type:
    """The CompressLab class for a registered CompressAI architecture; ConfigError (one line) when there is none."""
    if arch in _CLASSES:
        return _CLASSES[arch]
    from compresslab.models.registry import get_model_class

    registered = compressai_models()
    if arch not in registered:
        images = sorted(a for a, c in registered.items() if refusal(a, c) is None)
        raise ConfigError(f"model.arch={arch!r} is not registered in CompressAI; its image architectures: "
                          f"{', '.join(images)} (a plugin's @compressai.registry.register_model adds one)")
    if arch in OURS:
        return get_model_class(OURS[arch])
    base = registered[arch]
    why = refusal(arch, base)
    if why:
        raise ConfigError(why)
    mixin = _mixin(base)
    if _is_vbr(base):  # one checkpoint, one rate point per lambda (compressai_vbr)
        from compresslab.models.compressai_vbr import vbr_adapter

        cls = vbr_adapter(base, arch)
    elif mixin not in (AutoregressiveAdapter, LatentCodecAdapter, MeanScaleAdapter):
        # the factorized/hyperprior classes: their own constructors, on a subclass of CompressAI's class
        cls = type(base.__name__ + "Adapter", (mixin, base), {"compressai_arch": None, "__module__": __name__})
    else:
        cls = type(base.__name__ + "Adapter", (mixin, base), {"__init__": _make_init(base), "__module__": __name__,
                                                              "check_config": classmethod(_check_sizes),
                                                              "smoke_width": classmethod(_smoke_width)})
    cls.source_arch = arch
    _CLASSES[arch] = cls
    return cls


def _make_init(base: type):
    takes_m = _takes(base, "M")

    def __init__(self, N: int | None = None, M: int | None = None, deterministic_coding: bool | None = None,
                 **extra: Any):
        kw = {k: v for k, v in {"N": N, **({"M": M} if takes_m else {}), **extra}.items() if v is not None}
        base.__init__(self, **kw)
        if deterministic_coding and not self.supports_deterministic_coding:
            raise ValueError("deterministic_coding=true is implemented for the mean-scale hyperprior and joint "
                             "autoregressive families only; set model.deterministic_coding=false (CompressAI's own "
                             "float32 coding, same device)")
        # default: device-independent files where the family has them by default (mean-scale, as our hyperprior),
        # else CompressAI's coding (the autoregressive family: opt-in, and recorded only when on, so checkpoints and
        # files from before the switch decode as they were coded)
        default = getattr(self, "deterministic_coding_default", self.supports_deterministic_coding)
        self.deterministic_coding = bool(default if deterministic_coding is None else deterministic_coding)
        # the latent's channels: M where the class has it (its default when not given), else N (cheng2020: M = N)
        n = int(N) if N is not None else int(inspect.signature(base.__init__).parameters["N"].default)
        m = int(getattr(self, "M", None) or (M if takes_m and M is not None else n))
        self.hparams_dict = {"N": n, "M": m, **{k: v for k, v in extra.items() if v is not None},
                             **({"deterministic_coding": self.deterministic_coding}
                                if self.supports_deterministic_coding and (default or self.deterministic_coding)
                                else {})}

    return __init__


def _smoke_width(cls, cfg: Mapping[str, Any]) -> int:
    """debug=smoke's M: N where the architecture has one width (cheng2020), 160 where CompressAI's default channel
    groups need M > 128 (ELIC), else 48 (what _check_sizes accepts)."""
    base = cls.__bases__[1]
    if not _takes(base, "M"):
        return int(cfg["N"])
    return 160 if _takes(base, "groups") else CompressLabModel.smoke_width(cfg)


def _check_sizes(cls, cfg: Mapping[str, Any], max_steps: int) -> None:
    """Sizes the architecture cannot take, refused before any work (CompressAI's own constructors assert or fail
    deep inside torch)."""
    import torch

    arch = cls.source_arch
    base = cls.__bases__[1]  # (mixin, CompressAI's class)
    kw = {k: v for k, v in cfg.items() if k not in ("name", "arch")}
    if kw.get("deterministic_coding") and not cls.supports_deterministic_coding:
        raise ConfigError(f"model={arch}: deterministic_coding=true is implemented for the mean-scale hyperprior "
                          f"and joint autoregressive families only (this architecture codes in "
                          f"CompressAI's float32); set "
                          f"model.deterministic_coding=false")
    n, m = kw.get("N"), kw.get("M")
    if not _takes(base, "M") and m is not None and n is not None and int(m) != int(n):
        raise ConfigError(f"model={arch}: this architecture has one width N (its latent has N channels), but "
                          f"model.M={m} differs from model.N={n}; set model.M={n} (or null)")
    if _takes(base, "groups") and kw.get("groups") is None and m is not None and int(m) <= 128:
        raise ConfigError(f"model={arch}: the default channel groups [16, 16, 32, 64, M-128] need M > 128 (got "
                          f"model.M={m}); set model.groups=[...] summing to M, e.g. "
                          f"model.groups=[8,8,16,{int(m) - 32}]")
    if kw.get("groups") is not None and m is not None and sum(kw["groups"]) != int(m):
        raise ConfigError(f"model={arch}: model.groups={list(kw['groups'])} sums to {sum(kw['groups'])}, not "
                          f"model.M={m}")
    try:
        with torch.no_grad():  # once, on the CPU (CompressAI's entropy models cannot be built on the meta device)
            cls(**kw)
    except ConfigError:
        raise
    except Exception as e:  # noqa: BLE001 - whatever CompressAI's constructor rejects, said in one line
        raise ConfigError(f"model={arch}: CompressAI's {base.__name__} cannot be built with "
                          f"{ {k: v for k, v in kw.items()} }: {type(e).__name__}: {str(e).splitlines()[0]}") from None


@register_model("compressai")
class CompressAIModel(CompressLabModel, CompressionModel):
    """``model=compressai model.arch=<name>``: whatever CompressAI registers (including a plugin's class), built as
    that architecture's adapter class (the instance is of that class; this class is never instantiated)."""

    fixed_arch: str | None = None  # set on the refused per-architecture names (the vbr models)

    def __new__(cls, arch: str | None = None, **kwargs):
        arch = arch or cls.fixed_arch
        if not arch:
            raise ConfigError("model=compressai needs model.arch=<a CompressAI architecture>, e.g. mbt2018-mean")
        return adapter_class(arch)(**kwargs)

    @classmethod
    def _arch(cls, cfg: Mapping[str, Any]) -> str:
        arch = cfg.get("arch") or cls.fixed_arch
        if not arch:
            raise ConfigError("model=compressai needs model.arch=<a CompressAI architecture>, e.g. mbt2018-mean")
        return str(arch)

    @classmethod
    def curve_label(cls, cfg: Mapping[str, Any]) -> str:
        return str(cfg.get("arch") or cls.fixed_arch or cls.registry_name)  # an architecture's points join its curve

    @classmethod
    def check_config(cls, cfg: Mapping[str, Any], max_steps: int) -> None:
        adapter_class(cls._arch(cfg)).check_config(cfg, max_steps)

    @classmethod
    def smoke_width(cls, cfg: Mapping[str, Any]) -> int:
        return adapter_class(cls._arch(cfg)).smoke_width(cfg)

    # never called: __new__ returns an instance of the architecture's adapter class
    def encode_latents(self, x):
        raise NotImplementedError

    def latent_forward(self, latents):
        raise NotImplementedError

    def compress_latents(self, latents):
        raise NotImplementedError

    def decompress(self, strings, shape):
        raise NotImplementedError

    def string_layout(self, shape):
        raise NotImplementedError


ZOO = ("mbt2018-mean", "mbt2018", "cheng2020-anchor", "cheng2020-attn")  # CompressAI's zoo publishes weights for these


def _register_all() -> None:
    """One registered model per image architecture CompressAI has at import (a refused one under its name too, so
    ``model=<arch>`` says why)."""
    for arch, base in sorted(compressai_models().items()):
        if arch in OURS:
            continue
        why = refusal(arch, base)
        if why is None:
            cls = adapter_class(arch)
            if arch in ZOO:
                cls.compressai_arch = arch  # zoo weights load into it (io.zoo), CompressAI's class loads ours
            register_model(arch)(cls)
        elif not (".pointcloud" in base.__module__ or ".video" in base.__module__):
            register_model(arch)(type(base.__name__ + "Refused", (CompressAIModel,), {"fixed_arch": arch,
                                                                              "__module__": __name__}))


_register_all()
