"""Building a model from a checkpoint lives with the models: checkpoint I/O (compresslab.io.checkpoints) knows nothing
of model classes, so the two modules never import each other."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

from compressai.models import CompressionModel

from compresslab.io.checkpoints import (CheckpointError, atomic_torch_save, load_checkpoint, load_weights, model_config_of,
                           state_dict_of)
from compresslab.models.factory import build
from compresslab.models.registry import get_model_class


def build_model_from_checkpoint(path: str | os.PathLike, model_cfg: Mapping[str, Any] | None = None,
                                update: bool = True) -> tuple[CompressionModel, dict[str, Any]]:
    """Model + checkpoint metadata. ``model_cfg`` overrides the config saved in the checkpoint (needed for
    plain state dicts, which do not say what they are)."""
    ckpt = load_checkpoint(path)
    cfg = dict(model_cfg) if model_cfg else model_config_of(ckpt)
    if model_cfg and not {"N", "M"} <= set(cfg):  # a plain state dict: its sizes are in its weights
        cfg = {**infer_size(state_dict_of(ckpt)), **cfg}
    if cfg is None:
        raise CheckpointError(f"{path} is a plain state dict without CompressLab metadata; say which model it is "
                              f"(e.g. --model factorized --N 128 --M 192)")
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
    meta = dict(ckpt.get("compresslab") or {})
    meta["model"] = cfg
    meta["global_step"] = ckpt.get("global_step")
    meta["loss"] = (ckpt.get("hyper_parameters") or {}).get("loss")
    return model, meta


def export_state_dict(ckpt_path: str | os.PathLike, out_path: str | os.PathLike) -> tuple[Path, str]:
    """Plain state dict with updated CDF buffers. Returns the path and how to load it: CompressAI's own class for
    the architectures CompressAI has (same keys), ``compresslab evaluate --model`` for ours."""
    model, meta = build_model_from_checkpoint(ckpt_path, update=True)
    out = Path(out_path)
    atomic_torch_save(model.state_dict(), out)
    arch = getattr(model, "compressai_arch", None)
    if arch:
        cls = _compressai_class(arch)
        how = (f"CompressAI loads it as compressai.models.{cls}.from_state_dict(torch.load(path)), and "
               f"`python -m compressai.utils.eval_model checkpoint <images> -a {arch} -p {out}` evaluates it")
    else:
        name = meta["model"]["name"]
        cmd = " ".join(["compresslab evaluate", str(out), "--model", name,
                        *(f"--{k} {meta['model'][k]}" for k in ("N", "M") if k in meta["model"])])
        how = f"a {name} model has no CompressAI class; evaluate it with `{cmd}`"
    return out, how


def _compressai_class(arch: str) -> str:
    from compressai.zoo.image import model_architectures

    return model_architectures[arch].__name__


def infer_size(state_dict: Mapping[str, Any]) -> dict[str, int]:
    """N and M of a plain state dict from its analysis transform g_a: N = the output channels of the conv that reads
    the RGB image, M = those of g_a's last layer (every registered model's g_a ends in the latent's conv)."""
    convs = [(int(k.split(".")[1]), k, v) for k, v in state_dict.items()
             if k.startswith("g_a.") and k.endswith("weight") and getattr(v, "dim", lambda: 0)() == 4]
    rgb = [v for _, _, v in sorted(convs, key=lambda c: (c[0], c[1])) if v.shape[1] == 3]
    if not convs or not rgb:
        return {}
    last = max(convs, key=lambda c: (c[0], c[1] == f"g_a.{c[0]}.weight"))
    return {"N": int(rgb[0].shape[0]), "M": int(last[2].shape[0])}
