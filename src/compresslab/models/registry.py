"""Model registry: config names -> CompressAI-based classes.

One place maps the names used in ``conf/model/*.yaml`` (``name: factorized``) to classes, so
``factory.build(cfg.model)`` is the only way models are made and checkpoints can record the name.
"""

from __future__ import annotations

from typing import Callable

from compressai.models import CompressionModel

from compresslab.models.base import check_contract

_REGISTRY: dict[str, type[CompressionModel]] = {}


def register_model(name: str) -> Callable[[type[CompressionModel]], type[CompressionModel]]:
    def deco(cls: type[CompressionModel]) -> type[CompressionModel]:
        check_contract(name, cls)  # a model missing a method fails here, at import, in one line
        if name in _REGISTRY:
            raise ValueError(f"model name {name!r} is already registered to {_REGISTRY[name].__name__}")
        if "compressai_arch" in vars(cls) and cls.compressai_arch:  # declared here, not inherited by a subclass
            from compresslab.io.zoo import register_architecture

            register_architecture(cls.compressai_arch, name)
        _REGISTRY[name] = cls
        cls.registry_name = name
        return cls

    return deco


def model_names() -> list[str]:
    return sorted(_REGISTRY)


def get_model_class(name: str) -> type[CompressionModel]:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; registered models: {', '.join(model_names())}") from None
