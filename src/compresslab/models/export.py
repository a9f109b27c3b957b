"""``compresslab export``: a trained model's weights in a file other tools (and later runs) load without being told
what it is.

Two formats:
- ``compressai``: exactly what CompressAI's ``from_state_dict`` and ``eval_model`` load (its keys, updated CDF
  tables, nothing else); only for models with a CompressAI twin (``compressai_arch``), and their default.
- ``compresslab``: ``{"compresslab": header, "state_dict": weights}``, where the header says the model config (name,
  profile, sizes: everything the constructor takes), lambda, loss, step, package versions and where the weights came
  from. ``compresslab evaluate``/``compress``/``init_from=`` rebuild exactly the trained model from it, no flags.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import shlex
from pathlib import Path
from typing import Any, Mapping

from compresslab.io.checkpoints import (CheckpointError, atomic_torch_save, check_export_target, load_checkpoint,
                                        model_config_of)
from compresslab.models.from_checkpoint import build_model_from_checkpoint, fits_weights
from compresslab.models.registry import get_model_class

FORMATS = ("compressai", "compresslab")
EXPORT_FORMAT = "compresslab-weights"  # header["format"] of a file export wrote (a training checkpoint says 1)


def _versions() -> dict[str, str | None]:
    def version(dist: str) -> str | None:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return None

    return {d: version(d) for d in ("compresslab", "compressai", "torch")}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _source(ckpt_path: str, ckpt: Mapping[str, Any]) -> dict[str, Any]:
    """Where the weights came from, with no machine's folders in it (an exported file is meant to be shared)."""
    old = (ckpt.get("compresslab") or {}).get("source")
    if str(ckpt_path).startswith("zoo:"):
        return dict(old or {"zoo": str(ckpt_path)})
    p = Path(ckpt_path)
    src: dict[str, Any] = {"file": p.name, "sha256": _sha256(p)}
    if p.parent.name == "checkpoints":  # <run>/checkpoints/last.ckpt: the run's folder name is its id
        src["run"] = p.parent.parent.name
    if old:
        src["origin"] = old
    return src


def export_header(ckpt_path: str, ckpt: Mapping[str, Any], meta: Mapping[str, Any]) -> dict[str, Any]:
    saved = dict(ckpt.get("compresslab") or {})
    loss = (ckpt.get("hyper_parameters") or {}).get("loss") or saved.get("loss")
    return {"format": EXPORT_FORMAT, "format_version": 1, "model": dict(meta["model"]),
            "lambda": saved.get("lambda"), "loss": dict(loss) if loss else None,
            "global_step": meta.get("global_step"), "versions": _versions(), "source": _source(ckpt_path, ckpt)}


def describe(cfg: Mapping[str, Any]) -> str:
    """'msp (profile fast, N=32, M=48)': what a reader of the file needs to know it got the right model."""
    extra = [f"profile {cfg['profile']}"] if cfg.get("profile") else []
    extra += [f"{k}={cfg[k]}" for k in ("N", "M") if k in cfg]
    return f"{cfg['name']} ({', '.join(extra)})" if extra else str(cfg["name"])


def _q(path: os.PathLike | str) -> str:
    return shlex.quote(str(path))


def export_weights(ckpt_path: str, out_path: str, fmt: str | None = None, force: bool = False,
                   model_name: str | None = None) -> tuple[Path, str]:
    """Write ``ckpt_path``'s model to ``out_path`` (never over its input; an existing file only with ``force``).
    Returns the path and a sentence with the commands that load it (each one runs as printed)."""
    out = Path(out_path)
    check_export_target(ckpt_path, out, force)
    if fmt is not None and fmt not in FORMATS:
        raise CheckpointError(f"unknown export format {fmt!r}; use one of: {', '.join(FORMATS)}")
    ckpt = load_checkpoint(ckpt_path)
    saved = model_config_of(ckpt)
    if model_name and saved and saved.get("name") != model_name:
        raise CheckpointError(f"{ckpt_path} holds a {describe(saved)} model, not {model_name}: drop --model (a "
                              f"CompressLab checkpoint says what it is)")
    override = {"name": model_name} if model_name and not saved else None  # sizes: read from the weights
    model, meta = build_model_from_checkpoint(ckpt_path, override, update=True, ckpt=ckpt)
    # the header names every constructor value the model resolved (an MSP profile's scales, block, ...), so the file
    # rebuilds this model even where a class default changes later; the saved config's own values win over defaults
    resolved = {k: list(v) if isinstance(v, tuple) else v for k, v in model.hparams_dict.items()}
    given = {k: v for k, v in meta["model"].items() if v is not None or k not in resolved}
    cfg = meta["model"] = {"name": given["name"], **resolved, **given}
    model_cls = get_model_class(cfg["name"])
    arch = model_cls.compressai_arch
    fmt = fmt or ("compressai" if arch else "compresslab")
    if fmt == "compressai" and not arch and getattr(model_cls, "source_arch", None):
        # ELIC, checkerboard, factorized-relu: CompressAI has the class, but eval_model only takes its zoo table's names
        theirs = _registered_class(model_cls.source_arch)
        raise CheckpointError(f"model {cfg['name']} is CompressAI's {theirs} but not in the architecture table "
                              f"CompressAI's eval_model loads from, so eval_model cannot load it; "
                              f"export with --format compresslab (the default for this model)")
    if fmt == "compressai" and not arch:
        raise CheckpointError(f"model {cfg['name']} has no CompressAI class, so CompressAI's eval_model cannot load "
                              f"it; export it with --format compresslab (the default for this model)")
    if fmt == "compressai":
        sd = model.state_dict()
        atomic_torch_save(sd, out)
        cls = _compressai_class(arch)
        how = (f"a plain state dict with CompressAI's keys and updated CDF tables, {describe(cfg)}. CompressAI: "
               f"compressai.models.{cls}.from_state_dict(torch.load({str(out)!r})), or `python -m "
               f"compressai.utils.eval_model checkpoint <image folder> -a {arch} -p {_q(out)}`; CompressLab: ")
        if fits_weights(cfg["name"], sd):
            how += f"`compresslab evaluate {_q(out)} --model {cfg['name']}` (sizes read from the weights)"
        else:  # sizes the weights' shapes do not tell: only our header can say them
            how += "export with --format compresslab for a file `compresslab evaluate` takes"
    else:
        atomic_torch_save({"compresslab": export_header(ckpt_path, ckpt, meta), "state_dict": model.state_dict()}, out)
        how = (f"weights + a header naming the model, {describe(cfg)}; `compresslab evaluate {_q(out)}` rebuilds it "
               f"with no flags (as do compresslab compress and init_from=)")
        if arch:
            how += "; for CompressAI's eval_model, export with --format compressai"
    return out, how


def _compressai_class(arch: str) -> str:
    from compressai.zoo.image import model_architectures

    return model_architectures[arch].__name__


def _registered_class(arch: str) -> str:
    from compressai.registry import MODELS

    return MODELS[arch].__name__
