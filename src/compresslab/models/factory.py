"""``build(cfg.model)``: the one way models are made from a config (the registry names the class; a model built on a
trained base gets the base's tensors, read by base_weights, never a path to open)."""

from __future__ import annotations

from typing import Any, Mapping

from compressai.models import CompressionModel

from compresslab.models.base_weights import load_base_state
from compresslab.models.registry import get_model_class, model_names


def build(cfg: Mapping[str, Any]) -> CompressionModel:
    """Build a model from a plain mapping ``{"name": ..., <constructor kwargs>}``."""
    kwargs = dict(cfg)
    name = kwargs.pop("name", None)
    if name is None:
        raise ValueError("model config has no 'name' key; pick one of: " + ", ".join(model_names()))
    cls = get_model_class(name)
    if cls.requires_base_ckpt:
        # A model built on a trained base gets the base's weights, not a path to open (checkpoint reading stays here).
        path = kwargs.pop("base_ckpt", None)
        if path:
            size = {k: kwargs[k] for k in ("N", "M") if k in kwargs}
            kwargs["base_state"] = load_base_state(str(path), cls.base_model_of(kwargs), size)
    return cls(**kwargs)
