"""`compresslab anchors build`: a classical codec over a quality ladder on an image folder, measured with our
evaluator's rules, written as an anchor JSON (CompressAI's result format) with full provenance.

Measurement rules (the same as ``evaluation/evaluator.py``): PSNR on 8-bit RGB against the original image (peak
255), MS-SSIM on 8-bit RGB (our ``msssim_8bit``), bpp = bitstream bytes * 8 / (H * W); each number is the mean over
images of per-image values. The codecs are CompressAI's own benchmark classes (``compressai.utils.bench.codecs``:
Pillow JPEG and WebP); JPEG 2000 goes through Pillow's OpenJPEG (CompressAI's class needs ffmpeg); any other codec
(VTM, HM, BPG, AV1, ...) is the user's binaries given as command templates, so the anchor records exactly which
binary, version and command line produced it.
"""

from __future__ import annotations

import io
import os
import platform
import shlex
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from PIL import Image, features

from compresslab.evaluation.metrics import msssim_8bit, psnr_8bit

DEFAULT_QUALITIES = {"jpeg": list(range(5, 100, 5)), "webp": list(range(5, 100, 5)),
                     "jpeg2000": [5, 10, 20, 40, 60, 80, 120, 160, 240, 320]}  # jpeg2000: compression ratio


class BuildError(ValueError):
    pass


def _tensor(img: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0).permute(2, 0, 1)[None]


def _bpp(num_bytes: int, img: Image.Image) -> float:
    return num_bytes * 8 / (img.width * img.height)


def _pillow_jpeg2000(path: str, rate: int) -> tuple[float, Image.Image]:
    img = Image.open(path).convert("RGB")
    buf = io.BytesIO()
    img.save(buf, format="JPEG2000", quality_mode="rates", quality_layers=[float(rate)], irreversible=True)
    bpp = _bpp(buf.getbuffer().nbytes, img)
    buf.seek(0)
    rec = Image.open(buf)
    rec.load()
    return bpp, rec


def _compressai_codec(fmt: str) -> Callable[[str, int], tuple[float, Image.Image]]:
    from compressai.utils.bench.codecs import JPEG, WebP

    codec = {"jpeg": JPEG, "webp": WebP}[fmt](None)

    def run(path: str, quality: int) -> tuple[float, Image.Image]:
        info, rec = codec._run_impl(path, quality)   # CompressAI's own encode/decode through Pillow: bytes * 8 / (H W)
        return info["bpp"], rec
    return run


def _external(encoder: str, decoder: str, ext: str) -> Callable[[str, int], tuple[float, Image.Image]]:
    """User binaries as templates: {input} {output} {quality} for the encoder, {input} {output} for the decoder
    (the decoder writes a PNG). The bitstream's file size is the rate."""
    def run(path: str, quality: int) -> tuple[float, Image.Image]:
        with tempfile.TemporaryDirectory() as tmp:
            bits, rec_png = Path(tmp) / f"bits{ext}", Path(tmp) / "rec.png"
            for tmpl, fields, what in ((encoder, {"input": path, "output": bits, "quality": quality}, "encoder"),
                                       (decoder, {"input": bits, "output": rec_png}, "decoder")):
                cmd = [part.format(**{k: str(v) for k, v in fields.items()}) for part in shlex.split(tmpl)]
                r = subprocess.run(cmd, capture_output=True, text=True)
                if r.returncode != 0:
                    raise BuildError(f"{what} failed ({r.returncode}): {shlex.join(cmd)}\n{r.stderr[-2000:]}")
            if not bits.is_file() or not rec_png.is_file():
                raise BuildError(f"the encoder must write {{output}} and the decoder a PNG at {{output}}: "
                                 f"{encoder!r} / {decoder!r}")
            rec = Image.open(rec_png)
            rec.load()
            return _bpp(bits.stat().st_size, Image.open(path)), rec
    return run


def codec_version(codec: str, version_cmd: str | None = None) -> str:
    if codec == "jpeg":
        return f"libjpeg {features.version('jpg')} via Pillow {Image.__version__} (CompressAI bench JPEG class)"
    if codec == "webp":
        return f"libwebp {features.version('webp')} via Pillow {Image.__version__} (CompressAI bench WebP class)"
    if codec == "jpeg2000":
        return f"OpenJPEG {features.version('jpg_2000')} via Pillow {Image.__version__}"
    if version_cmd:
        r = subprocess.run(shlex.split(version_cmd), capture_output=True, text=True)
        return (r.stdout or r.stderr).strip().splitlines()[0] if (r.stdout or r.stderr).strip() else "unknown"
    return "not given (--version-cmd)"


def build_anchor(codec: str, images: Sequence[Path], name: str, qualities: Sequence[int] | None = None,
                 encoder: str | None = None, decoder: str | None = None, ext: str = ".bin",
                 version_cmd: str | None = None, dataset: str | None = None) -> dict[str, Any]:
    """Run ``codec`` at every quality on every image; returns the anchor document (CompressAI's result format)."""
    if codec in ("jpeg", "webp"):
        run = _compressai_codec(codec)
        config = f"Pillow save(format={codec.upper()}, quality=q), default subsampling (4:2:0)"
        colour = "YCbCr 4:2:0 (Pillow default)" if codec == "jpeg" else "YUV 4:2:0 (libwebp lossy)"
    elif codec == "jpeg2000":
        if not features.check("jpg_2000"):
            raise BuildError("this Pillow has no OpenJPEG (JPEG 2000) support; install a Pillow wheel with it")
        run, config = _pillow_jpeg2000, "Pillow save(format=JPEG2000, quality_mode='rates', quality_layers=[q], " \
                                        "irreversible=True): q is the compression ratio"
        colour = "RGB -> YCbCr irreversible colour transform (OpenJPEG default for 3 components)"
    elif codec == "external":
        if not (encoder and decoder):
            raise BuildError("--codec external needs --encoder and --decoder command templates, e.g. "
                             "--encoder 'EncoderApp -i {input} -b {output} -q {quality}' --decoder 'my_dec {input} {output}'")
        run, config, colour = _external(encoder, decoder, ext), f"encoder: {encoder} | decoder: {decoder}", \
            "as the user's binaries do it (their configuration is the command line)"
    else:
        raise BuildError(f"unknown codec {codec!r}: jpeg, webp, jpeg2000 or external")
    qs = list(qualities or DEFAULT_QUALITIES.get(codec) or [])
    if not qs:
        raise BuildError("give --qualities for an external codec (its own quality/QP scale)")
    if not images:
        raise BuildError("no images to build the anchor on")
    rows: dict[str, list[float]] = {"bpp": [], "psnr-rgb": [], "ms-ssim-rgb": [], "encoding_time": []}
    for q in qs:
        per = {k: [] for k in rows}
        for path in images:
            x = _tensor(Image.open(path))
            t0 = time.perf_counter()
            bpp, rec = run(str(path), q)
            per["encoding_time"].append(time.perf_counter() - t0)  # encode + decode
            x_hat = _tensor(rec)
            if x_hat.shape != x.shape:
                raise BuildError(f"{path}: the decoded image is {tuple(x_hat.shape[2:])}, the input "
                                 f"{tuple(x.shape[2:])}")
            per["bpp"].append(bpp)
            per["psnr-rgb"].append(psnr_8bit(x, x_hat))
            per["ms-ssim-rgb"].append(msssim_8bit(x, x_hat))
        for k in rows:
            rows[k].append(float(np.mean(per[k])))
    from compresslab.provenance import git_state  # the builder's own code version

    git = git_state()
    return {
        "name": name,
        "description": f"{codec} anchor built by compresslab anchors build",
        "results": rows,
        "meta": {
            "builder": "compresslab anchors build",
            "codec": codec, "version": codec_version(codec, version_cmd), "configuration": config,
            "qualities": qs, "colour_space": colour,
            "psnr": "PSNR on RGB against the original 8-bit RGB image (peak 255), mean of per-image values",
            "ms_ssim": "MS-SSIM on 8-bit RGB (pytorch-msssim, as CompressAI), mean of per-image values",
            "bpp": "bitstream file bytes * 8 / (H * W), mean of per-image values",
            "timing": "encoding_time holds encode + decode wall seconds per image (one process, this machine)",
            "dataset": dataset or "", "images": len(images), "image_names": [Path(p).name for p in images],
            "machine": f"{platform.machine()} {platform.processor() or ''} {platform.system()} "
                       f"{platform.release()}, {os.cpu_count()} CPUs".replace("  ", " "),
            "compresslab_commit": git.get("commit"),
            "date": time.strftime("%Y-%m-%d"),
        },
    }
