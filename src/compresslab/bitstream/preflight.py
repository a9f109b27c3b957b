"""What is checked before any coding starts: the image's declared size (Pillow's decompression-bomb rule, from the
header alone), the decode limits of conf/decode.yaml, and the device asked for."""

from __future__ import annotations

import contextlib
import os

import torch
from PIL import Image

from compresslab.bitstream.limits import decode_defaults
from compresslab.data.images import ImageDecodeError
from compresslab.io.inputs import check_regular_file

# Decode limits and tiling (conf/decode.yaml; CLI: --max-pixels, --memory-mb, --tile). Pillow's decompression-bomb
# rule: a warning above 89 MP, a refusal above twice that, before anything is allocated, whatever the file's size.
# The memory limit is what a decode may need by the estimate below and, in the isolated decoder, the child's
# address-space limit; the synthesis transform runs tile by tile, so a decode's peak grows with a tile, not the image.
DEFAULT_WARN_PIXELS = decode_defaults()["warn_pixels"]
DEFAULT_MAX_PIXELS = decode_defaults()["max_pixels"]
DEFAULT_MEMORY_MB = decode_defaults()["memory_mb"]
DEFAULT_TILE = decode_defaults()["tile"]


def warn_large(what: str, h: int, w: int) -> None:
    """Pillow's DecompressionBombWarning above DEFAULT_WARN_PIXELS (the CLI prints it as one line)."""
    if h * w > DEFAULT_WARN_PIXELS:
        import warnings

        warnings.warn(f"{what} is {w}x{h} ({w * h / 1e6:.1f} MP), above {DEFAULT_WARN_PIXELS / 1e6:.1f} MP (Pillow's "
                      f"decompression-bomb warning); decoding it anyway", Image.DecompressionBombWarning, stacklevel=3)


def check_image_size(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[int, int]:
    """(width, height) from the image's header alone, or ImageDecodeError naming the pixel limit, before any pixel
    is decoded or any tensor allocated (a 420 KB PNG of zeros can declare 12000x12000). PIL refuses sizes over
    twice its own Image.MAX_IMAGE_PIXELS (DecompressionBombError) unless ``max_pixels`` allows more (pil_limit)."""
    import warnings

    from PIL import UnidentifiedImageError

    check_regular_file(path, "image")
    try:
        with warnings.catch_warnings(), pil_limit(max_pixels):
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the limit below decides, once
            with Image.open(path) as img:
                w, h = img.size
    except Image.DecompressionBombError:
        raise ImageDecodeError(f"image {path} declares more than {2 * Image.MAX_IMAGE_PIXELS} pixels (PIL's "
                               f"decompression-bomb limit), above the limit of {max_pixels} pixels "
                               f"({max_pixels / 1e6:.1f} MP); refusing to decode it") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise ImageDecodeError(f"cannot decode image {path}: {e}") from None
    if w * h > max_pixels:
        raise ImageDecodeError(f"image {path} is {w}x{h} ({w * h / 1e6:.1f} MP), above the limit of {max_pixels} "
                               f"pixels ({max_pixels / 1e6:.1f} MP); raise it with --max-pixels if you mean it "
                               f"(compress_file(max_pixels=...))")
    warn_large(f"image {path}", h, w)
    return w, h


@contextlib.contextmanager
def pil_limit(max_pixels: int):
    """Pillow refuses images over 2x Image.MAX_IMAGE_PIXELS: a --max-pixels above that raises its limit too."""
    old = Image.MAX_IMAGE_PIXELS
    if old is not None and max_pixels > 2 * old:
        Image.MAX_IMAGE_PIXELS = max_pixels // 2 + 1
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = old


def check_device(device: str) -> str:
    """'cpu', 'cuda' or 'cuda:<k>' that this machine has; anything else is one line naming what it has."""
    if device == "cpu":
        return device
    n = torch.cuda.device_count()
    has = ", ".join(["cpu", *(f"cuda:{k}" for k in range(n))])
    try:
        d = torch.device(device)
    except RuntimeError:
        raise ValueError(f"--device {device!r} is not a device name; this machine has: {has}") from None
    if d.type != "cuda" or n == 0 or (d.index or 0) >= n:
        raise ValueError(f"--device {device}: not on this machine; it has: {has}")
    return device
