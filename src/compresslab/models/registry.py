"""Model registry: config names -> CompressAI-based classes.

One place maps the names used in ``conf/model/*.yaml`` (``name: factorized``) to classes, so
``build(cfg.model)`` is the only way models are made and checkpoints can record the name.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from compressai.models import CompressionModel

_REGISTRY: dict[str, type[CompressionModel]] = {}


def register_model(name: str) -> Callable[[type[CompressionModel]], type[CompressionModel]]:
    def deco(cls: type[CompressionModel]) -> type[CompressionModel]:
        if name in _REGISTRY:
            raise ValueError(f"model name {name!r} is already registered to {_REGISTRY[name].__name__}")
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


def build(cfg: Mapping[str, Any]) -> CompressionModel:
    """Build a model from a plain mapping ``{"name": ..., <constructor kwargs>}``."""
    kwargs = dict(cfg)
    name = kwargs.pop("name", None)
    if name is None:
        raise ValueError("model config has no 'name' key; pick one of: " + ", ".join(model_names()))
    cls = get_model_class(name)
    if getattr(cls, "requires_base_ckpt", False):
        # A model built on a trained base gets the base's weights, not a path to open (checkpoint reading stays here).
        path = kwargs.pop("base_ckpt", None)
        if path:
            from .base_weights import load_base_state

            size = {k: kwargs[k] for k in ("N", "M") if k in kwargs}
            kwargs["base_state"] = load_base_state(str(path), cls.base_model, size)
    return cls(**kwargs)
