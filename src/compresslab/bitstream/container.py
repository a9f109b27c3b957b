"""A small versioned container for compressed images, so a file says what decodes it.

Layout (big-endian)::

    magic  b"CLAB"          4 bytes
    format version          u8   (this module writes 1)
    header length           u32
    header                  UTF-8 JSON: model name + config, weights hash, image H/W, latent shape, string layout,
                            and (version 2) payload_sha256, the SHA-256 of the payload
    payload                 the entropy-coded strings, concatenated (lengths are in the header)
    crc32                   u32 over everything above

Everything is validated before a single byte reaches the entropy decoder: a truncated, corrupted or foreign file
raises ``ContainerError`` with the reason, and a checkpoint whose weights hash differs is refused.

What the two checks protect against: the CRC-32 catches accidental damage anywhere in the file; the payload digest
catches a payload changed by accident or by a naive edit that left the header alone (it is not a signature: anyone
can rewrite both). Memory safety does not depend on either: the decoder is hardened for any payload
(bitstream.codec). Version 1 files (no digest) still decode.
"""

from __future__ import annotations

import hashlib
import json
import struct
import zlib
from dataclasses import dataclass
from typing import Any

MAGIC = b"CLAB"
VERSION = 2
READABLE_VERSIONS = (1, 2)
_MAX_HEADER = 1 << 20
_MAX_DEPTH = 8            # our headers nest 3 deep; json.loads recurses once per level (RecursionError)
MAX_SIDE = 1 << 15        # 32768 px per side
MAX_PIXELS = 1 << 28      # 268 M pixels: a decoder must not be asked to allocate more
# No coder writes more than the raw 8-bit RGB of the largest image it accepts: a bigger file is not one of ours, and
# readers stop there (a symlink to /dev/zero must not be read to exhaustion).
MAX_FILE_BYTES = 9 + _MAX_HEADER + 3 * MAX_PIXELS + 4


class ContainerError(ValueError):
    pass


def _json_depth(raw: bytes) -> int:
    """Deepest [ / { nesting outside strings, without recursion (so it cannot be driven into RecursionError)."""
    depth = deepest = 0
    in_str = esc = False
    for b in raw:
        if in_str:
            if esc:
                esc = False
            elif b == 0x5C:      # backslash
                esc = True
            elif b == 0x22:      # quote
                in_str = False
        elif b == 0x22:
            in_str = True
        elif b in (0x5B, 0x7B):  # [ {
            depth += 1
            deepest = max(deepest, depth)
        elif b in (0x5D, 0x7D):
            depth -= 1
    return deepest


def _reject_constant(name: str):
    raise ContainerError(f"corrupt header: non-finite number {name}")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """object_pairs_hook: a key given twice is refused (json keeps the last one silently, so two readers that
    resolve duplicates differently could see two different headers in one file)."""
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ContainerError(f"corrupt header: key {k[:40]!r} appears twice")
        out[k] = v
    return out


def _int(v: Any, what: str, lo: int, hi: int) -> int:
    """A JSON integer in [lo, hi]; floats, booleans, strings and out-of-range values are refused by name."""
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise ContainerError(f"corrupt header: {what} must be an integer in [{lo}, {hi}], got {str(v)[:40]!r}")
    return v


def _parse_header(raw: bytes, payload_len: int, version: int = VERSION) -> dict[str, Any]:
    """Strict schema: every field typed and range-checked before anything uses it."""
    if _json_depth(raw) > _MAX_DEPTH:
        raise ContainerError(f"corrupt header: nested deeper than {_MAX_DEPTH} levels")
    try:
        header = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant, object_pairs_hook=_unique_keys)
    except ContainerError:
        raise
    except (ValueError, UnicodeDecodeError) as e:
        raise ContainerError(f"corrupt header: {type(e).__name__}: {e}") from e
    if not isinstance(header, dict):
        raise ContainerError("corrupt header: not a JSON object")
    missing = {"model", "weights_hash", "height", "width", "shape", "lengths"} - set(header)
    if missing:
        raise ContainerError(f"corrupt header: missing {sorted(missing)}")
    if not isinstance(header["model"], dict) or not isinstance(header["model"].get("name"), str):
        raise ContainerError("corrupt header: 'model' must be an object with a string 'name'")
    if not isinstance(header["weights_hash"], str) or len(header["weights_hash"]) > 128:
        raise ContainerError("corrupt header: 'weights_hash' must be a short string")
    h = _int(header["height"], "height", 1, MAX_SIDE)
    w = _int(header["width"], "width", 1, MAX_SIDE)
    if h * w > MAX_PIXELS:
        raise ContainerError(f"image {h}x{w} exceeds the decoder's limit of {MAX_PIXELS} pixels")
    shape = header["shape"]
    if not isinstance(shape, list) or len(shape) != 2:
        raise ContainerError(f"corrupt header: 'shape' must be two integers, got {str(shape)[:60]}")
    shape = [_int(v, "shape", 1, MAX_SIDE) for v in shape]
    lengths = header["lengths"]
    if not isinstance(lengths, list) or not 1 <= len(lengths) <= 16 or \
            not all(isinstance(g, list) and 1 <= len(g) <= 64 for g in lengths):
        raise ContainerError("corrupt header: 'lengths' must be 1-16 groups of 1-64 string lengths")
    lengths = [[_int(n, "string length", 0, payload_len) for n in g] for g in lengths]
    digest = header.get("payload_sha256")
    if version >= 2 and (not isinstance(digest, str) or len(digest) != 64):
        raise ContainerError("corrupt header: 'payload_sha256' must be a 64-character hex string")
    rate_point = header.get("rate_point")  # a variable-rate model's rate point (absent for the others)
    if rate_point is not None:
        rate_point = _int(rate_point, "rate_point", 0, 255)
    return {**header, "height": h, "width": w, "shape": shape, "lengths": lengths, "payload_sha256": digest,
            "rate_point": rate_point}


@dataclass
class Container:
    model: dict[str, Any]
    weights_hash: str
    height: int
    width: int
    shape: list[int]
    strings: list[list[bytes]]   # one list per latent (CompressAI's out_enc["strings"]), batch of one image
    rate_point: int | None = None  # which of a variable-rate model's rate points coded it (None: a fixed-rate model)

    def to_bytes(self) -> bytes:
        lengths = [[len(s) for s in group] for group in self.strings]
        payload = b"".join(s for group in self.strings for s in group)
        header = json.dumps({
            "model": self.model, "weights_hash": self.weights_hash, "height": self.height, "width": self.width,
            "shape": list(self.shape), "lengths": lengths, "payload_sha256": hashlib.sha256(payload).hexdigest(),
            **({"rate_point": self.rate_point} if self.rate_point is not None else {}),
        }, sort_keys=True).encode()
        body = MAGIC + struct.pack(">BI", VERSION, len(header)) + header + payload
        return body + struct.pack(">I", zlib.crc32(body))

    @classmethod
    def from_bytes(cls, data: bytes) -> "Container":
        if len(data) < 4 or data[:4] != MAGIC:
            raise ContainerError("not a CompressLab file (bad magic bytes); was it written by `compresslab compress`?")
        if len(data) < 13:
            raise ContainerError(f"file is truncated ({len(data)} bytes)")
        version, hlen = struct.unpack(">BI", data[4:9])
        if version not in READABLE_VERSIONS:
            raise ContainerError(f"unsupported container version {version} (this CompressLab reads "
                                 f"{', '.join(map(str, READABLE_VERSIONS))}); use a matching CompressLab release")
        if hlen > _MAX_HEADER or 9 + hlen + 4 > len(data):
            raise ContainerError(f"file is truncated or corrupt (header length {hlen}, file {len(data)} bytes)")
        body, crc = data[:-4], struct.unpack(">I", data[-4:])[0]
        if zlib.crc32(body) != crc:
            raise ContainerError("checksum mismatch: the file is corrupted or truncated")
        payload = body[9 + hlen:]
        header = _parse_header(body[9: 9 + hlen], len(payload), version)
        if header["payload_sha256"] is not None and hashlib.sha256(payload).hexdigest() != header["payload_sha256"]:
            raise ContainerError("payload digest mismatch: the coded data was changed after encoding "
                                 "(the header's payload_sha256 does not match)")
        lengths = header["lengths"]
        total = sum(n for group in lengths for n in group)
        if total != len(payload):
            raise ContainerError(f"payload is {len(payload)} bytes but the header announces {total}")
        strings, pos = [], 0
        for group in lengths:
            out = []
            for n in group:
                out.append(bytes(payload[pos: pos + n]))
                pos += n
            strings.append(out)
        return cls(model=dict(header["model"]), weights_hash=header["weights_hash"], height=header["height"],
                   width=header["width"], shape=header["shape"], strings=strings, rate_point=header["rate_point"])
