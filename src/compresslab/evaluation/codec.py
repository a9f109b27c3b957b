"""``compress`` an image file to a container and ``decompress`` it back, with the checks that make it safe."""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from compressai.ops import compute_padding
from PIL import Image

from ..checkpoints import CheckpointError, build_model_from_checkpoint, weights_hash
from ..data import load_image_tensor
from .container import Container, ContainerError


@torch.no_grad()
def compress_file(ckpt: str | os.PathLike, image: str | os.PathLike, out: str | os.PathLike,
                  lof=None, lmbda: float | None = None) -> dict:
    """``lof``: a LOFConfig to overfit the latent first (the file and its decoder are the same)."""
    model, meta = build_model_from_checkpoint(ckpt)
    x = load_image_tensor(image).unsqueeze(0)
    h, w = x.shape[-2:]
    pad, _ = compute_padding(h, w, min_div=getattr(model, "pad_multiple", 64))
    if lof is not None:
        from ..lof import overfit_latents

        lmbda = meta.get("lambda") if lmbda is None else lmbda
        if lmbda is None:
            raise ValueError("LOF needs the model's lambda: the checkpoint has none, pass --lmbda")
        latents, report = overfit_latents(model, x, float(lmbda), lof)
        enc = model.compress_latents(latents)
        enc["lof"] = {k: v for k, v in report.items() if k != "lof_curve"}
    else:
        enc = model.compress(F.pad(x, pad, mode="constant", value=0))
    strings = [list(s) for s in enc["strings"]]
    c = Container(model=meta["model"], weights_hash=weights_hash(model), height=h, width=w,
                  shape=[int(v) for v in enc["shape"]], strings=strings)
    data = c.to_bytes()
    Path(out).write_bytes(data)
    return {"bytes": len(data), "payload_bytes": sum(len(s) for g in strings for s in g),
            "bpp": len(data) * 8 / (h * w), **enc.get("lof", {})}


@torch.no_grad()
def decompress_file(path: str | os.PathLike, ckpt: str | os.PathLike, out: str | os.PathLike | None = None):
    data = Path(path).read_bytes()
    c = Container.from_bytes(data)
    model, meta = build_model_from_checkpoint(ckpt)
    if meta["model"].get("name") != c.model.get("name"):
        raise CheckpointError(f"{path} was encoded with model {c.model.get('name')!r} but {ckpt} holds "
                              f"{meta['model'].get('name')!r}")
    digest = weights_hash(model)
    if digest != c.weights_hash:
        raise CheckpointError(f"{path} needs weights {c.weights_hash[:16]}... but {ckpt} has {digest[:16]}...; "
                              f"decode with the checkpoint that encoded it")
    n_groups = len(c.strings)
    if any(len(g) != 1 for g in c.strings) or len(c.shape) != 2 or min(c.shape) <= 0:
        raise ContainerError(f"{path}: unexpected string layout {[len(g) for g in c.strings]} / shape {c.shape}")
    try:
        dec = model.decompress(c.strings, torch.Size(c.shape))
    except (RuntimeError, ValueError, IndexError) as e:
        raise ContainerError(f"{path}: the entropy decoder rejected the payload ({n_groups} strings): {e}") from e
    _, unpad = compute_padding(c.height, c.width, min_div=getattr(model, "pad_multiple", 64))
    x_hat = F.pad(dec["x_hat"], unpad)
    if tuple(x_hat.shape[-2:]) != (c.height, c.width):
        raise ContainerError(f"{path}: decoded size {tuple(x_hat.shape[-2:])} does not match the header "
                             f"{c.height}x{c.width}")
    arr = (x_hat[0].clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()
    img = Image.fromarray(arr, mode="RGB")
    if out is not None:
        img.save(out)
    return img
