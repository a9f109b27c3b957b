"""A small versioned container for compressed images, so a file says what decodes it.

Layout (big-endian)::

    magic  b"CLAB"          4 bytes
    format version          u8   (this module writes 1)
    header length           u32
    header                  UTF-8 JSON: model name + config, weights hash, image H/W, latent shape, string layout
    payload                 the entropy-coded strings, concatenated (lengths are in the header)
    crc32                   u32 over everything above

Everything is validated before a single byte reaches the entropy decoder: a truncated, corrupted or foreign file
raises ``ContainerError`` with the reason, and a checkpoint whose weights hash differs is refused.
"""

from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass
from typing import Any

MAGIC = b"CLAB"
VERSION = 1
_MAX_HEADER = 1 << 20


class ContainerError(ValueError):
    pass


@dataclass
class Container:
    model: dict[str, Any]
    weights_hash: str
    height: int
    width: int
    shape: list[int]
    strings: list[list[bytes]]   # one list per latent (CompressAI's out_enc["strings"]), batch of one image

    def to_bytes(self) -> bytes:
        lengths = [[len(s) for s in group] for group in self.strings]
        header = json.dumps({
            "model": self.model, "weights_hash": self.weights_hash, "height": self.height, "width": self.width,
            "shape": list(self.shape), "lengths": lengths,
        }, sort_keys=True).encode()
        body = MAGIC + struct.pack(">BI", VERSION, len(header)) + header + b"".join(
            s for group in self.strings for s in group)
        return body + struct.pack(">I", zlib.crc32(body))

    @classmethod
    def from_bytes(cls, data: bytes) -> "Container":
        if len(data) < 4 or data[:4] != MAGIC:
            raise ContainerError("not a CompressLab file (bad magic bytes); was it written by `compresslab compress`?")
        if len(data) < 13:
            raise ContainerError(f"file is truncated ({len(data)} bytes)")
        version, hlen = struct.unpack(">BI", data[4:9])
        if version != VERSION:
            raise ContainerError(f"unsupported container version {version} (this CompressLab reads {VERSION}); "
                                 f"use a matching CompressLab release")
        if hlen > _MAX_HEADER or 9 + hlen + 4 > len(data):
            raise ContainerError(f"file is truncated or corrupt (header length {hlen}, file {len(data)} bytes)")
        body, crc = data[:-4], struct.unpack(">I", data[-4:])[0]
        if zlib.crc32(body) != crc:
            raise ContainerError("checksum mismatch: the file is corrupted or truncated")
        try:
            header = json.loads(body[9: 9 + hlen].decode())
            lengths = header["lengths"]
            payload = body[9 + hlen:]
            total = sum(int(n) for group in lengths for n in group)
            if total != len(payload) or any(int(n) < 0 for g in lengths for n in g):
                raise ContainerError(f"payload is {len(payload)} bytes but the header announces {total}")
            strings, pos = [], 0
            for group in lengths:
                out = []
                for n in group:
                    out.append(bytes(payload[pos: pos + int(n)]))
                    pos += int(n)
                strings.append(out)
            h, w = int(header["height"]), int(header["width"])
            if not (0 < h <= 1 << 16 and 0 < w <= 1 << 16):
                raise ContainerError(f"implausible image size {h}x{w}")
            return cls(model=dict(header["model"]), weights_hash=str(header["weights_hash"]), height=h, width=w,
                       shape=[int(v) for v in header["shape"]], strings=strings)
        except ContainerError:
            raise
        except (KeyError, TypeError, ValueError, UnicodeDecodeError) as e:
            raise ContainerError(f"corrupt header: {type(e).__name__}: {e}") from e
