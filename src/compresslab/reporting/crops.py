"""Decoded crops side by side for one image: the original, each run with a checkpoint (its real bitstream: written by
``bitstream.codec.compress_file`` and decoded by ``decompress_file``, as `compresslab compress` / `decompress` do),
and JPEG / WebP (CompressAI's bench classes, as the anchor builder uses them) at the quality whose rate is nearest
each of ours. The crops are PNGs inlined as data URIs; hovering one magnifies it (CSS only)."""

from __future__ import annotations

import base64
import html
import io
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

CLASSIC = ("jpeg", "webp")


@dataclass
class Crop:
    label: str
    png: bytes
    bpp: float | None = None          # payload bits per pixel of the whole image (None: the original)
    psnr: float | None = None         # PSNR-RGB of the whole decoded image, 8-bit
    crop_psnr: float | None = None    # PSNR-RGB of the crop alone (what the eye compares)
    note: str = ""


def run_checkpoint(rd_file: Path) -> Path | None:
    """The weights an rd.json was measured with, when the run folder still holds them (published runs keep none)."""
    ckpt = rd_file.parent / "checkpoints" / "last.ckpt"
    return ckpt if ckpt.is_file() else None


def _box(w: int, h: int, size: int, at: tuple[int, int] | None) -> tuple[int, int, int, int]:
    size = min(size, w, h)
    x, y = at if at is not None else ((w - size) // 2, (h - size) // 2)
    if not (0 <= x <= w - size and 0 <= y <= h - size):
        raise ValueError(f"--crop-at {x},{y} with --crop-size {size} leaves the {w}x{h} image: choose x <= "
                         f"{w - size} and y <= {h - size}")
    return x, y, x + size, y + size


def _png(img) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _psnr(a, b) -> float:
    import numpy as np

    mse = float(np.mean((np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def make_crops(rd_files: Sequence[Path], image: Path, size: int = 160, at: tuple[int, int] | None = None) -> list[Crop]:
    from PIL import Image

    from compresslab.rd.anchor_builder import DEFAULT_QUALITIES
    from compresslab.bitstream.codec import check_image_size, compress_file, decompress_file
    from compresslab.evaluation.results import RDResult

    check_image_size(image)
    original = Image.open(image).convert("RGB")
    box = _box(*original.size, size, at)
    ref = original.crop(box)
    crops = [Crop(f"original {image.name} ({box[0]},{box[1]}) {box[2] - box[0]} px", _png(ref))]
    rates = []
    for f in rd_files:
        ckpt = run_checkpoint(f)
        if ckpt is None:
            continue
        meta = RDResult.read(f).meta
        with tempfile.TemporaryDirectory(prefix="compresslab-crops-") as tmp:
            info = compress_file(ckpt, image, Path(tmp) / "image.clab")
            rec = decompress_file(Path(tmp) / "image.clab", ckpt).convert("RGB")  # our own file: in process
        bpp = info["payload_bytes"] * 8 / (original.width * original.height)
        lam = f" λ {meta.lmbda:g}" if meta.lmbda is not None else ""
        label = f"{meta.label or meta.model.get('name') or f.parent.name}{lam}"
        crops.append(Crop(label, _png(rec.crop(box)), bpp, _psnr(original, rec), _psnr(ref, rec.crop(box)),
                          f"{ckpt}"))
        rates.append(bpp)
    for codec in CLASSIC:
        crops += _classic(codec, image, original, ref, box, rates, DEFAULT_QUALITIES[codec])
    return crops


def _classic(codec: str, image: Path, original, ref, box, rates: list[float], qualities) -> list[Crop]:
    """``codec`` at the quality whose whole-image rate is nearest each of ours (one crop per distinct quality)."""
    from compressai.utils.bench.codecs import JPEG, WebP

    if not rates:
        return []
    run = {"jpeg": JPEG, "webp": WebP}[codec](None)
    ladder = {}
    for q in qualities:
        info, rec = run._run_impl(str(image), q)
        ladder[q] = (float(info["bpp"]), rec.convert("RGB"))
    chosen = sorted({min(ladder, key=lambda q: abs(ladder[q][0] - r)) for r in rates})
    return [Crop(f"{codec.upper()} q{q}", _png(ladder[q][1].crop(box)), ladder[q][0], _psnr(original, ladder[q][1]),
                 _psnr(ref, ladder[q][1].crop(box)), "nearest rate to one of ours") for q in chosen]


CSS = """.crops{display:flex;flex-wrap:wrap;gap:10px}.crops figure{margin:0;font-size:12px;text-align:center}
.crops img{width:240px;image-rendering:pixelated;transition:transform .15s;transform-origin:center}
.crops img:hover{transform:scale(2.2);position:relative;z-index:5;box-shadow:0 0 8px #0008}"""


def crops_html(crops: list[Crop]) -> str:
    figs = []
    for c in crops:
        uri = "data:image/png;base64," + base64.b64encode(c.png).decode()
        nums = "" if c.bpp is None else (f"<br>{c.bpp:.4f} bpp, {c.psnr:.2f} dB (crop {c.crop_psnr:.2f} dB)")
        attrs = "" if c.bpp is None else f' data-bpp="{c.bpp:.6f}" data-crop-psnr="{c.crop_psnr:.6f}"'
        figs.append(f'<figure class="crop"{attrs} title="{html.escape(c.note)}"><img src="{uri}" alt="'
                    f'{html.escape(c.label)}"><figcaption>{html.escape(c.label)}{nums}</figcaption></figure>')
    if len(crops) == 1:
        figs.append('<p class="note">No run here keeps its checkpoint (run folder/checkpoints/last.ckpt), so no '
                    "bitstream can be decoded: give run folders of your own outputs.</p>")
    return (f"<style>{CSS}</style><p class=\"note\">Decoded from real bitstreams; rates and PSNR are of the whole "
            f"image, the crop's own PSNR in brackets. Hover a crop to magnify it.</p><div class=\"crops\">"
            f"{''.join(figs)}</div>")
