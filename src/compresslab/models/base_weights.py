"""Weights of a trained base model for models built on one (the adaptive model on a factorized base): read from a
checkpoint here, so the model's constructor receives tensors and never opens a file (``registry.build`` resolves
``model.base_ckpt`` through this module)."""

from __future__ import annotations

from typing import Any

from torch import Tensor


def base_info(path: str) -> dict[str, Any]:
    """N, M (so `model=adaptive model.base_ckpt=...` needs no size overrides) and the lambda a base checkpoint was
    trained at (None for plain state dicts and zoo weights without it), from one read of the file. N/M come from the
    file's header (a CompressLab checkpoint or export, a zoo spec), else from the shapes of a plain state dict's
    weights; these are the sizes the model is built with, so they are what its run's config.yaml must record."""
    from compresslab.io.checkpoints import load_checkpoint, model_config_of, size_from_weights, state_dict_of

    ckpt = load_checkpoint(path)
    saved = model_config_of(ckpt) or {}
    size = {k: int(saved[k]) for k in ("N", "M") if k in saved} or size_from_weights(state_dict_of(ckpt))
    value = (ckpt.get("compresslab") or {}).get("lambda")
    if value is None:
        value = (ckpt.get("hyper_parameters") or {}).get("lambda")
    return {**size, "lambda": float(value) if value is not None else None}


def base_size_from_checkpoint(path: str) -> dict[str, int]:
    return {k: v for k, v in base_info(path).items() if k in ("N", "M")}


def base_lambda(path: str) -> float | None:
    return base_info(path)["lambda"]


def load_base_state(path: str, base_name: str, size: dict[str, Any]) -> dict[str, Tensor]:
    """The base model's state dict from a CompressLab checkpoint, a plain state dict or a zoo reference, checked to
    hold a ``base_name`` model and loaded through that model's class (so key layouts and CDF buffers are resolved
    exactly as for any other checkpoint)."""
    from compresslab.io.checkpoints import CheckpointError, load_checkpoint, load_weights, model_config_of
    from compresslab.models.registry import get_model_class

    ckpt = load_checkpoint(path)
    saved = model_config_of(ckpt)
    if saved and saved.get("name") != base_name:
        raise CheckpointError(f"model.base_ckpt={path} holds a {saved.get('name')!r} model; this model needs a trained "
                              f"{base_name} checkpoint (train one with model={base_name}, or name the base it holds: "
                              f"model.base_model={saved.get('name')})")
    base = get_model_class(base_name)(**size)
    load_weights(base, ckpt, source=f"model.base_ckpt={path}")
    return base.state_dict()
