"""Building a model from a checkpoint lives with the models: checkpoint I/O (compresslab.io.checkpoints) knows nothing
of model classes, so the two modules never import each other. Writing one out for other tools: models.export."""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Any, Mapping

from compressai.models import CompressionModel

from compresslab.io.checkpoints import (CheckpointError, load_checkpoint, load_weights, model_config_of,
                                        size_from_weights, state_dict_of)
from compresslab.models.factory import build
from compresslab.models.registry import get_model_class, model_names

def build_model_from_checkpoint(path: str | os.PathLike, model_cfg: Mapping[str, Any] | None = None,
                                update: bool = True, ckpt: Mapping[str, Any] | None = None,
                                ) -> tuple[CompressionModel, dict[str, Any]]:
    """Model + checkpoint metadata. ``model_cfg`` overrides the config saved in the checkpoint (needed for
    plain state dicts, which do not say what they are; their N/M are read from the weights). ``ckpt``: the file's
    contents when the caller has already read them."""
    ckpt = load_checkpoint(path) if ckpt is None else ckpt
    cfg = dict(model_cfg) if model_cfg else model_config_of(ckpt)
    if model_cfg and not {"N", "M"} <= set(cfg):  # a plain state dict: its sizes are in its weights
        cfg = {**size_from_weights(state_dict_of(ckpt)), **cfg}
    if cfg is None:
        raise CheckpointError(plain_state_dict_message(path, ckpt))
    try:
        cls = get_model_class(cfg["name"])
    except KeyError as e:  # a plugin model whose file this process has not loaded
        raise CheckpointError(f"{path} holds model {cfg['name']!r}, which is not registered here ({e.args[0]}); if "
                              f"it is a plugin model, name its file in $COMPRESSLAB_PLUGINS (os.pathsep-separated), "
                              f"e.g. COMPRESSLAB_PLUGINS=/abs/path/my_models.py") from None
    if cls.requires_base_ckpt:
        cfg = {**cfg, "base_ckpt": None}  # the checkpoint holds the base weights too; the base file is not needed
    model = build(cfg)
    load_weights(model, ckpt, source=str(path))
    model.eval()
    if update:
        model.update(force=True)
    saved = dict(ckpt.get("compresslab") or {})
    meta = dict(saved)
    meta["model"] = cfg
    meta["global_step"] = ckpt.get("global_step", saved.get("global_step"))  # an exported file keeps it in its header
    meta["loss"] = (ckpt.get("hyper_parameters") or {}).get("loss") or saved.get("loss")
    return model, meta


_TABLES = ("_cdf", "_cdf_length", "_offset", "scale_table")  # coding tables: sized by update(), not by the model


def fits_weights(name: str, state_dict: Mapping[str, Any]) -> bool:
    """Whether model ``name`` built at the sizes read from these weights has exactly their keys and shapes (so
    ``--model name`` loads them)."""
    try:
        own = get_model_class(name)(**size_from_weights(state_dict)).state_dict()
    except Exception:  # noqa: BLE001 - sizes (or defaults) this class cannot take: not a fit
        return False
    return own.keys() == state_dict.keys() and all(
        own[k].shape == state_dict[k].shape for k in own if not k.endswith(_TABLES))


def matching_models(state_dict: Mapping[str, Any]) -> list[str]:
    """Registered models (not built on a base) that these weights fit (``fits_weights``)."""
    if not size_from_weights(state_dict):
        return []
    return [n for n in model_names() if not get_model_class(n).requires_base_ckpt and fits_weights(n, state_dict)]


def plain_state_dict_message(path, ckpt: Mapping[str, Any]) -> str:
    """One line for weights that do not say which model they are, with commands that work as printed."""
    names = matching_models(state_dict_of(ckpt))
    name = names[0] if len(names) == 1 else "<name>"
    which = f"its keys are those of a {name} model" if len(names) == 1 else \
        f"they fit {', '.join(names)}" if names else f"models: {', '.join(model_names())}"
    wrapped = Path(path).with_name(Path(path).name.split(".")[0] + "-compresslab.pth")
    q = shlex.quote
    return (f"{path} is a plain state dict without CompressLab metadata ({which}); `compresslab evaluate` takes "
            f"--model {name}, and `compresslab export {q(str(path))} {q(str(wrapped))} --model {name} --format "
            f"compresslab` writes a copy that says what it is (then no flag is needed anywhere)")
