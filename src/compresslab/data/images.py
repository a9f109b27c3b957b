"""Image files: the data root, finding images, decoding any mode to 8-bit RGB, tensors, crops. The loading rules in
one place (``load_rgb``): every mode becomes 8-bit RGB (grayscale replicated, alpha composited on white, palette
expanded, 16-bit scaled down by 257). No Lightning here: evaluation and the CLI read images without the datamodule."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from compresslab.data.root import ENV_VAR

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp")


class DataLayoutError(FileNotFoundError):
    pass


class ImageDecodeError(ValueError):
    pass


def find_images(folder: Path, layout_hint: str | None = None, context: str = "") -> list[Path]:
    """Image files under ``folder`` (recursive), sorted for reproducibility; picked by extension. ``layout_hint``
    replaces the default layout's explanation when the folder is missing (named datasets say their own)."""
    if not folder.is_dir():
        raise DataLayoutError(f"{context}image folder {folder} does not exist. " + (layout_hint or (
            f"Expected layout: <data root>/train, <data root>/val, "
            f"<data root>/kodak with .png/.jpg/.webp files. Set data.root=... or ${ENV_VAR}, or see README "
            f"('Data') to download Kodak with `compresslab fetch kodak`.")))
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    if not files:
        raise DataLayoutError(f"{context}no images ({', '.join(IMAGE_EXTENSIONS)}) found under {folder}")
    return files


def to_rgb8(img: Image.Image) -> Image.Image:
    """Any PIL mode -> 8-bit RGB. 16/32-bit integer images are scaled to 8 bits, not clipped."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        arr = np.clip(np.round(arr / peak * 255.0), 0, 255).astype(np.uint8)
        img = Image.fromarray(arr, mode="L")
    elif img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        scale = 255.0 if arr.max() <= 1.0 else 1.0
        img = Image.fromarray(np.clip(np.round(arr * scale), 0, 255).astype(np.uint8), mode="L")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
        # Alpha is composited on white rather than dropped, so transparent pixels do not become arbitrary colours.
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, img)
    return img.convert("RGB")


def load_rgb(path: str | os.PathLike) -> Image.Image:
    """Decode an image file to 8-bit RGB or raise ImageDecodeError naming the file."""
    try:
        with Image.open(path) as img:
            img.load()
            return to_rgb8(img)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        # DecompressionBombError (PIL's own pixel limit) is no OSError: without it a bomb was a traceback
        raise ImageDecodeError(f"cannot decode image {path}: {e}") from e


def image_to_tensor(img: Image.Image) -> Tensor:
    arr = np.asarray(img, dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(255.0)


def load_image_tensor(path: str | os.PathLike) -> Tensor:
    """(3, H, W) float tensor in [0, 1]."""
    return image_to_tensor(load_rgb(path))


def crop_patch(x: Tensor, p: int | None, train: bool, generator: torch.Generator | None = None) -> Tensor:
    """Training: a random p x p crop and a random horizontal flip (from ``generator``, else the global RNG);
    validation: the centre crop. Images smaller than the patch are padded (reflect where possible)."""
    if not p:
        return x
    _, h, w = x.shape
    if h < p or w < p:
        pad_h, pad_w = max(0, p - h), max(0, p - w)
        mode = "reflect" if pad_h < h and pad_w < w else "replicate"
        x = torch.nn.functional.pad(x[None], (0, pad_w, 0, pad_h), mode=mode)[0]
        _, h, w = x.shape
    if train:
        top = int(torch.randint(0, h - p + 1, (1,), generator=generator))
        left = int(torch.randint(0, w - p + 1, (1,), generator=generator))
        x = x[:, top: top + p, left: left + p]
        if torch.rand(1, generator=generator).item() < 0.5:
            x = x.flip(-1)
        return x
    top, left = (h - p) // 2, (w - p) // 2
    return x[:, top: top + p, left: left + p]
