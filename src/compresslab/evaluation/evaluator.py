"""Evaluate a model on images with real entropy-coded bitstreams, measured the way CompressAI's eval_model does.

Per image: pad (centred, zeros) to the model's multiple of 64, ``compress`` to bytes, ``decompress`` from those bytes
only, crop back, round to 8 bits, then PSNR on RGB 0-255, MS-SSIM (and its dB form), bpp = payload bytes * 8 / (H*W),
the likelihood-estimated bpp and the ratio real/estimated, encode and decode seconds. The decoder's latents must
equal the encoder's quantised latents; otherwise the codec is broken and ``CodecMismatchError`` is raised.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import torch
import torch.nn.functional as F
from compressai.ops import compute_padding
from torch import Tensor

from compresslab.data.images import DataLayoutError, find_images, load_image_tensor
from compresslab.evaluation.metrics import bpp_from_bytes, likelihood_bits_exact, msssim_8bit, psnr_8bit
from compresslab.evaluation.quality import msssim_db
from compresslab.models.base import pad_multiple_of

METRIC_KEYS = ("bpp", "psnr-rgb", "ms-ssim-rgb", "ms-ssim-db-rgb", "bpp_est", "bpp_ratio", "encoding_time",
               "decoding_time")


class CodecMismatchError(RuntimeError):
    """Decoder latents differ from the encoder's: the entropy coder or its tables are not in sync."""


def kodak_error(path: Path) -> DataLayoutError:
    return DataLayoutError(
        f"Kodak images not found at {path}. Expected kodim01.png ... kodim24.png there. Get them with "
        f"`compresslab fetch kodak --root {path.parent}`, or point data.root / $COMPRESSLAB_DATA at a folder with kodak/."
    )


def payload_bytes(strings: Sequence[Any]) -> int:
    """Bytes of all entropy-coded strings of a single image (strings is a list of per-latent lists)."""
    total = 0
    for s in strings:
        if isinstance(s, (bytes, bytearray)):
            total += len(s)
        elif isinstance(s, (list, tuple)):
            total += payload_bytes(s)
        else:
            raise TypeError(f"unexpected string type {type(s).__name__}")
    return total


def check_latents(enc: dict[str, Tensor] | None, dec: dict[str, Tensor] | None, where: str) -> None:
    if enc is None or dec is None:
        return
    for k, v in enc.items():
        if k not in dec:
            raise CodecMismatchError(f"{where}: decoder did not return latent {k!r}")
        if v.shape != dec[k].shape or not torch.equal(v, dec[k]):
            bad = (v != dec[k]).sum().item() if v.shape == dec[k].shape else "shape"
            raise CodecMismatchError(f"{where}: decoded latent {k!r} differs from the encoder's ({bad} elements); "
                                     f"the probability tables of encoder and decoder are out of sync")


@torch.no_grad()
def estimate_bpp(model, x_padded: Tensor, num_pixels: int) -> float:
    out = model(x_padded)
    return likelihood_bits_exact(out["likelihoods"]) / num_pixels


@torch.no_grad()
def evaluate_image(model, x: Tensor, name: str = "image", check: bool = True,
                   encode: Callable[[Tensor], dict] | None = None) -> dict[str, Any]:
    """x: (3, H, W) or (1, 3, H, W) in [0, 1]. ``encode`` replaces ``model.compress`` (used by LOF)."""
    if x.dim() == 3:
        x = x.unsqueeze(0)
    h, w = x.shape[-2:]
    pad, unpad = compute_padding(h, w, min_div=pad_multiple_of(model))
    x_padded = F.pad(x, pad, mode="constant", value=0)

    t0 = time.perf_counter()
    enc = (encode or model.compress)(x_padded)
    enc_time = time.perf_counter() - t0
    t0 = time.perf_counter()
    dec = model.decompress(enc["strings"], enc["shape"])
    dec_time = time.perf_counter() - t0
    if check:
        check_latents(enc.get("latents"), dec.get("latents"), name)

    x_hat = F.pad(dec["x_hat"], unpad)
    num_pixels = h * w
    # A model's "free" string groups carry oracle data for bounds (the adaptive model's ideal mode), not bits.
    free = getattr(model, "free_string_groups", ())
    nbytes = payload_bytes([s for i, s in enumerate(enc["strings"]) if i not in free])
    bpp = bpp_from_bytes(nbytes, num_pixels)
    bpp_est = estimate_bpp(model, x_padded, num_pixels)
    ms = msssim_8bit(x, x_hat)
    row = {
        "name": name, "height": h, "width": w, "bytes": nbytes,
        "bpp": bpp, "psnr-rgb": psnr_8bit(x, x_hat), "ms-ssim-rgb": ms, "ms-ssim-db-rgb": msssim_db(ms),
        "bpp_est": bpp_est, "bpp_ratio": bpp / bpp_est if bpp_est > 0 else float("nan"),
        "encoding_time": enc_time, "decoding_time": dec_time,
    }
    extra = enc.get("report")
    if extra:
        row.update(extra)
    return row


def mean_rows(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    keys = [k for k, v in rows[0].items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    out = {}
    for k in keys:
        vals = [float(r[k]) for r in rows if k in r]
        finite = [v for v in vals if math.isfinite(v)]
        if len(finite) < len(vals):  # e.g. an infinite PSNR of a lossless image: say so, never drop silently
            warnings.warn(f"mean of {k}: {len(vals) - len(finite)} of {len(vals)} images excluded (non-finite)",
                          RuntimeWarning, stacklevel=2)
        out[k] = sum(finite) / len(finite) if finite else float("nan")
    return out


def center_crop(x: Tensor, size: int | None) -> Tensor:
    if not size:
        return x
    h, w = x.shape[-2:]
    th, tw = min(size, h), min(size, w)
    top, left = (h - th) // 2, (w - tw) // 2
    return x[..., top: top + th, left: left + tw]


def list_eval_images(images: str | os.PathLike, max_images: int | None = None) -> list[Path]:
    p = Path(images)
    if not p.exists():
        raise kodak_error(p) if p.name == "kodak" else DataLayoutError(f"image folder {p} does not exist")
    files = find_images(p) if p.is_dir() else [p]
    return files[: int(max_images)] if max_images else files


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity: a SLURM or taskset allocation, not the whole machine)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def default_workers() -> int:
    """Images evaluated at once when not told: one per usable core, at most 8 (each worker holds a model and an
    image's activations; a 768x512 decode peaks near 1 GB)."""
    return min(usable_cores(), 8)


@torch.no_grad()
def evaluate_model(model, images: Iterable[str | os.PathLike], crop: int | None = None, check: bool = True,
                   encode_factory: Callable[[Tensor], Callable] | None = None, progress: bool = False,
                   workers: int = 1) -> dict[str, Any]:
    """Evaluate on image files; returns {"per_image": rows, "mean": metrics}. Calls update(force=True) once.

    ``workers`` > 1 evaluates that many images at once in forked processes with one torch thread each
    (evaluation.parallel: the context models' serial decoders hold the GIL, so threads would not help them); rows
    keep the images' order and equal one-at-a-time rows. A model on a GPU, and LOF (``encode_factory``, which
    optimises per image), run one image at a time here. ``progress``: a line per finished image on stderr with the
    ETA (evaluation.progress). A decode whose latents differ from the encoder's raises CodecMismatchError naming
    the image, in a worker too."""
    from compresslab.evaluation.parallel import can_fork, map_images
    from compresslab.evaluation.progress import Progress

    model.eval()
    model.update(force=True)
    paths = [Path(p) for p in images]
    if not paths:
        raise DataLayoutError("no images to evaluate")
    workers = min(int(workers), len(paths)) if encode_factory is None and can_fork(model) else 1

    def one(m, path: Path) -> dict[str, Any]:
        with torch.no_grad():
            x = center_crop(load_image_tensor(path), crop)
            encode = encode_factory(x) if encode_factory else None
            return evaluate_image(m, x, name=path.name, check=check, encode=encode)

    bar = Progress(len(paths)) if progress else None
    done = bar.update if bar else (lambda row: None)
    try:
        if workers > 1:
            rows = map_images(model, paths, one, workers, done)
        else:
            rows = []
            for path in paths:
                rows.append(one(model, path))
                done(rows[-1])
    finally:
        if bar:
            bar.close()
    return {"per_image": rows, "mean": mean_rows(rows)}


def to_compressai_json(result: dict[str, Any], name: str, description: str = "",
                       meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """One RD point in CompressAI's result format (lists of one value) plus per-image rows and our metadata."""
    mean = result["mean"]
    return {
        "name": name,
        "description": description,
        "results": {k: [mean[k]] for k in METRIC_KEYS if k in mean},
        "per_image": result["per_image"],
        "meta": meta or {},
    }
