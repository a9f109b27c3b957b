"""Building a model from a checkpoint lives with the models: checkpoint I/O (compresslab.checkpoints) knows nothing
of model classes, so the two modules never import each other."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

from compressai.models import CompressionModel

from ..checkpoints import CheckpointError, atomic_torch_save, load_checkpoint, load_weights, model_config_of
from .registry import build, get_model_class


def build_model_from_checkpoint(path: str | os.PathLike, model_cfg: Mapping[str, Any] | None = None,
                                update: bool = True) -> tuple[CompressionModel, dict[str, Any]]:
    """Model + checkpoint metadata. ``model_cfg`` overrides the config saved in the checkpoint (needed for
    plain state dicts, which do not say what they are)."""
    ckpt = load_checkpoint(path)
    cfg = dict(model_cfg) if model_cfg else model_config_of(ckpt)
    if cfg is None:
        raise CheckpointError(f"{path} is a plain state dict without CompressLab metadata; say which model it is "
                              f"(e.g. --model factorized --N 128 --M 192)")
    if get_model_class(cfg["name"]).requires_base_ckpt:
        cfg = {**cfg, "base_ckpt": None}  # the checkpoint holds the base weights too; the base file is not needed
    model = build(cfg)
    load_weights(model, ckpt, source=str(path))
    model.eval()
    if update:
        model.update(force=True)
    meta = dict(ckpt.get("compresslab") or {})
    meta["model"] = cfg
    meta["global_step"] = ckpt.get("global_step")
    meta["loss"] = (ckpt.get("hyper_parameters") or {}).get("loss")
    return model, meta


def export_state_dict(ckpt_path: str | os.PathLike, out_path: str | os.PathLike) -> Path:
    """Plain state dict with updated CDF buffers, loadable by CompressAI's ``from_state_dict`` and ``eval_model``."""
    model, _ = build_model_from_checkpoint(ckpt_path, update=True)
    out = Path(out_path)
    atomic_torch_save(model.state_dict(), out)
    return out
