"""Weights of a trained base model for models built on one (the adaptive model on a factorized base): read from a
checkpoint here, so the model's constructor receives tensors and never opens a file (``registry.build`` resolves
``model.base_ckpt`` through this module)."""

from __future__ import annotations

from typing import Any

from torch import Tensor


def base_size_from_checkpoint(path: str) -> dict[str, int]:
    """N and M of a base checkpoint, so `model=adaptive model.base_ckpt=...` needs no size overrides."""
    from ..checkpoints import load_checkpoint, model_config_of

    saved = model_config_of(load_checkpoint(path)) or {}
    return {k: int(saved[k]) for k in ("N", "M") if k in saved}


def base_lambda(path: str) -> float | None:
    """The lambda a base checkpoint was trained at (None for plain state dicts and zoo weights without it)."""
    from ..checkpoints import load_checkpoint

    ckpt = load_checkpoint(path)
    value = (ckpt.get("compresslab") or {}).get("lambda")
    if value is None:
        value = (ckpt.get("hyper_parameters") or {}).get("lambda")
    return float(value) if value is not None else None


def load_base_state(path: str, base_name: str, size: dict[str, Any]) -> dict[str, Tensor]:
    """The base model's state dict from a CompressLab checkpoint, a plain state dict or a zoo reference, checked to
    hold a ``base_name`` model and loaded through that model's class (so key layouts and CDF buffers are resolved
    exactly as for any other checkpoint)."""
    from ..checkpoints import CheckpointError, load_checkpoint, load_weights, model_config_of
    from .registry import get_model_class

    ckpt = load_checkpoint(path)
    saved = model_config_of(ckpt)
    if saved and saved.get("name") != base_name:
        raise CheckpointError(f"model.base_ckpt={path} holds a {saved.get('name')!r} model; this model needs a trained "
                              f"{base_name} checkpoint (train one with model={base_name})")
    base = get_model_class(base_name)(**size)
    load_weights(base, ckpt, source=f"model.base_ckpt={path}")
    return base.state_dict()
