"""What a file that torch could not load as weights actually is (image, text, pickle, truncated checkpoint), in words
a user can act on. torch's own messages advise ``weights_only=False`` (running the file's code): we never pass that
on, so a load error is rewritten here from the file's first bytes and the exception's kind."""

from __future__ import annotations

import re

_MAGIC = ((b"\x89PNG\r\n\x1a\n", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"), (b"GIF8", "a GIF image"),
          (b"II*\x00", "a TIFF image"), (b"MM\x00*", "a TIFF image"), (b"\x1f\x8b", "a gzip archive"),
          (b"BZh", "a bzip2 archive"), (b"\xfd7zXZ\x00", "an xz archive"), (b"7z\xbc\xaf", "a 7-Zip archive"),
          (b"CLAB", "a CompressLab bitstream (.clab)"), (b"\x93NUMPY", "a NumPy .npy array"))
_FIX = ("pass a checkpoint a run wrote (<run>/checkpoints/last.ckpt), a file `compresslab export` wrote, or a plain "
        "state dict saved with torch.save(model.state_dict(), path)")


def _text_head(head: bytes) -> str | None:
    """The first line of ``head`` if it reads as text, else None."""
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        try:  # a multi-byte character cut at the end of the sample
            text = head[:-3].decode("utf-8")
        except UnicodeDecodeError:
            return None
    if not text or any(c < " " and c not in "\t\n\r\f" for c in text):
        return None
    return (text.strip().splitlines() or [""])[0][:40]


def kind_of(head: bytes) -> str | None:
    """A name for content starting with ``head`` ('a PNG image', "a text file (first line 'epoch: 1')"), or None."""
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "a WebP image"
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return name
    if head[:1] == b"\x80" and head[1:2] and 2 <= head[1] <= 5:
        return "a Python pickle"
    first = _text_head(head)
    if first is not None:
        return f"a text file (first line {first!r})"
    return None


def unreadable_message(path, head: bytes, error: BaseException) -> str:
    """One line for a checkpoint ``path`` whose ``torch.load(weights_only=True)`` raised ``error``."""
    text = str(error)
    found = re.search(r"Unsupported global: GLOBAL (\S+)", text)
    stores = f"stores a {found.group(1)} object" if found else ""
    if head.startswith(b"PK\x03\x04"):  # torch.save's zip container
        if found:
            return (f"cannot read checkpoint {path}: it is a PyTorch file that {stores}, which a weights-only load does not create "
                    f"(CompressLab never runs code from a checkpoint); save its tensors instead: "
                    f"torch.save(model.state_dict(), path)")
        index = " (its zip index is missing)" if "central directory" in text else ""
        return (f"cannot read checkpoint {path}: it is a truncated, corrupt PyTorch file{index}, as an interrupted "
                f"copy or save leaves ({type(error).__name__}); copy it again or use another checkpoint")
    kind = kind_of(head)
    if kind == "a Python pickle":
        return (f"cannot read checkpoint {path}: it is a Python pickle, not a weights-only PyTorch checkpoint; "
                f"it {stores or 'holds objects, not only tensors'}, and CompressLab never unpickles code from a file: "
                f"{_FIX}")
    if kind is not None:
        return f"cannot read checkpoint {path}: it is {kind}, not a PyTorch checkpoint; {_FIX}"
    return (f"cannot read checkpoint {path}: it is not a PyTorch checkpoint (unrecognised content starting {head[:8].hex(' ')}, or a "
            f"truncated file); {_FIX}")
