"""``compress`` an image file to a container and ``decompress`` it back, with the checks that make it safe."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F
from compressai.ops import compute_padding
from PIL import Image

from compresslab.io.atomic import atomic_write_bytes
from compresslab.io.checkpoints import CheckpointError, weights_hash
from compresslab.io.inputs import InputFileError, read_regular_file
from compresslab.models.from_checkpoint import build_model_from_checkpoint
from compresslab.data.images import load_image_tensor
from compresslab.entropy.bounds import rans_slack
from compresslab.bitstream.container import MAX_FILE_BYTES, Container, ContainerError
from compresslab.models.base import pad_multiple_of
from compresslab.models.tiling import NotTileable, latent_only, synthesis_geometry, synthesize_rgb8

from compresslab.bitstream.preflight import (  # noqa: F401 - re-exported: callers import them from here
    DEFAULT_MAX_PIXELS, DEFAULT_MEMORY_MB, DEFAULT_TILE, DEFAULT_WARN_PIXELS, check_device, check_image_size, pil_limit,
    warn_large)


def write_atomic(path: str | os.PathLike, data: bytes) -> None:
    """The output file written atomically (no half file, no temporary one left); the error names the path."""
    try:
        atomic_write_bytes(path, data)
    except OSError as e:
        raise OSError(e.errno, f"cannot write {path}: {e.strerror}; nothing was written") from None


def pick_rate_point(model, meta: dict, rate_point: int | None, ckpt) -> int | None:
    """Set and return the rate point a variable-rate model codes at (None for any other model); ValueError, one
    line, for a rate point the model does not have."""
    lambdas = list(model.rate_lambdas)
    if not lambdas:
        if rate_point is not None:
            raise ValueError(f"--rate-point {rate_point}: {ckpt} holds a fixed-rate model "
                             f"({meta['model'].get('name')}); drop --rate-point")
        return None
    if rate_point is None:  # the checkpoint's own lambda, else the highest rate
        own = meta.get("lambda")
        near = [k for k, v in enumerate(lambdas) if own is not None and abs(v - float(own)) <= 1e-6 * v]
        rate_point = near[0] if near else len(lambdas) - 1
    if not 0 <= int(rate_point) < len(lambdas):
        raise ValueError(f"--rate-point {rate_point}: {ckpt} has rate points 0..{len(lambdas) - 1} (lambdas "
                         f"{lambdas})")
    model.set_rate_point(int(rate_point))
    return int(rate_point)


@torch.no_grad()
def compress_file(ckpt: str | os.PathLike, image: str | os.PathLike, out: str | os.PathLike,
                  lof=None, lmbda: float | None = None, max_pixels: int = DEFAULT_MAX_PIXELS,
                  rate_point: int | None = None, device: str = "cpu") -> dict:
    """``lof``: a LOFConfig to overfit the latent first (the file and its decoder are the same). Images over
    ``max_pixels`` are refused from their header, before the checkpoint is even read. ``rate_point``: which rate
    point of a variable-rate model codes it (default: the one of the checkpoint's lambda); the header records it.
    ``device``: where the analysis and entropy coding run (a file encoded on a GPU decodes on a CPU where the model
    codes device-independently: benchmarks/cross_device_files.py measures which do)."""
    check_image_size(image, max_pixels)
    device = check_device(device)
    model, meta = build_model_from_checkpoint(ckpt)
    model.to(device)
    rate_point = pick_rate_point(model, meta, rate_point, ckpt)
    if lof is not None and rate_point is not None:
        raise ValueError("--lof of a variable-rate model is not implemented; compress it without --lof")
    with pil_limit(max_pixels):
        x = load_image_tensor(image).unsqueeze(0)
    h, w = x.shape[-2:]
    pad, _ = compute_padding(h, w, min_div=pad_multiple_of(model))
    if lof is not None:
        import dataclasses

        from compresslab.evaluation.lof import overfit_latents
        from compresslab.evaluation.results import checkpoint_lambda, checkpoint_metric

        lmbda = checkpoint_lambda(meta, lmbda)  # the rules `evaluate --lof` follows: the checkpoint's lambda, metric
        if lmbda is None:
            raise ValueError("LOF needs the model's lambda: the checkpoint has none, pass --lmbda")
        lof = dataclasses.replace(lof, metric=checkpoint_metric(meta))
        latents, report = overfit_latents(model, x.to(device), lmbda, lof)
        enc = model.compress_latents(latents)
        enc["lof"] = {k: v for k, v in report.items() if k != "lof_curve"}
    else:
        enc = model.compress(F.pad(x, pad, mode="constant", value=0).to(device))
    strings = [list(s) for s in enc["strings"]]
    c = Container(model=meta["model"], weights_hash=weights_hash(model), height=h, width=w,
                  shape=[int(v) for v in enc["shape"]], strings=strings, rate_point=rate_point)
    data = c.to_bytes()
    write_atomic(out, data)
    return {"bytes": len(data), "payload_bytes": sum(len(s) for g in strings for s in g),
            "bpp": len(data) * 8 / (h * w), "rate_point": rate_point, **enc.get("lof", {})}


def decompress_file(path: str | os.PathLike, ckpt: str | os.PathLike, out: str | os.PathLike | None = None,
                    isolate: bool = False, timeout: float = 600.0, memory_mb: int = DEFAULT_MEMORY_MB,
                    max_pixels: int = DEFAULT_MAX_PIXELS, tile: int = DEFAULT_TILE, device: str = "cpu"):
    """Decode a .clab file. ``isolate=True`` (the CLI's default for files from elsewhere) runs the entropy decoder in
    a child process with a memory limit and a timeout, so that whatever the C++ rANS decoder does with a payload
    cannot take this process down; its death becomes a ContainerError here. The file is read once, here (a regular
    file, at most MAX_FILE_BYTES), parsed strictly, and its bytes are handed to the child on stdin (the child never
    opens the path: it cannot be swapped for a FIFO in between). Both paths refuse, before decoding, a header that
    asks for more than ``max_pixels`` or, by its estimate, more than ``memory_mb`` (see decode_bytes). ``tile``: the
    synthesis transform's tile side in latent units (0: whole image; the pixels are the same). ``device``: where the
    entropy decoding runs (the synthesis transform always runs on the CPU: its pixels are the same everywhere)."""
    device = check_device(device)
    try:
        data = read_regular_file(path, MAX_FILE_BYTES, "compressed file")
    except InputFileError as e:  # a directory, FIFO, device, a link to one, or unreadable: refused unread
        raise ContainerError(str(e)) from None
    if not isolate:
        return _decompress_in_process(data, ckpt, out, source=str(path), memory_mb=memory_mb, max_pixels=max_pixels,
                                      tile=tile, device=device)
    c = Container.from_bytes(data)  # strict, cannot crash: refuse what is refusable without a child
    _check_pixels(c, max_pixels, str(path))  # warns here; the child's warning is not shown
    memory_mb = effective_memory_mb(memory_mb)
    with tempfile.TemporaryDirectory() as td:
        png = Path(td) / "decoded.png"
        limit = int(memory_mb) << 20

        def limits():  # runs in the child before exec; only lowers the soft limit (raising it past the hard one
            import resource  # is what failed under `ulimit -v`: "Exception occurred in preexec_fn")

            soft, hard = resource.getrlimit(resource.RLIMIT_AS)
            resource.setrlimit(resource.RLIMIT_AS, (limit if hard == resource.RLIM_INFINITY else min(limit, hard),
                                                    hard))

        cmd = [sys.executable, "-m", "compresslab.bitstream.codec", "-", str(ckpt), str(png), str(path),
               str(memory_mb), str(max_pixels), str(tile), device]
        try:
            r = subprocess.run(cmd, input=data, capture_output=True, timeout=timeout, preexec_fn=limits)
        except subprocess.TimeoutExpired:
            raise ContainerError(f"{path}: decoding did not finish within {timeout:.0f} s; the payload is corrupt "
                                 f"or crafted (raise --timeout if the file is yours and large)") from None
        if r.returncode < 0:
            name = signal.Signals(-r.returncode).name
            raise ContainerError(f"{path}: the entropy decoder crashed ({name}) on this payload: the file is corrupt "
                                 f"or crafted (decoded in an isolated process; nothing else was affected)")
        if r.returncode != 0:
            lines = [ln for ln in r.stderr.decode(errors="replace").strip().splitlines() if ln.strip()]
            msg = lines[-1] if lines else f"exit code {r.returncode}"
            kind, _, text = msg.partition(": ")
            err = CheckpointError if kind == "CheckpointError" else ContainerError
            raise err(text if kind in ("CheckpointError", "ContainerError") else f"{path}: decoder failed: {msg}")
        img = Image.open(png)
        img.load()
    if out is not None:
        _save_png(img, out)
    return img


def effective_memory_mb(memory_mb: int) -> int:
    """``memory_mb``, or less where the environment already caps the address space lower (``ulimit -v``): that cap
    is respected, never raised, and the estimate is checked against what is really available."""
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    return int(memory_mb) if soft == resource.RLIM_INFINITY else min(int(memory_mb), soft >> 20)


@torch.no_grad()
def _decompress_in_process(data: bytes, ckpt: str | os.PathLike, out: str | os.PathLike | None = None,
                           source: str = "<bytes>", device: str = "cpu", **limits):
    model, meta = build_model_from_checkpoint(ckpt)
    model.to(device)
    img = decode_bytes(data, model, meta, source=source, ckpt=str(ckpt), **limits)
    if out is not None:
        _save_png(img, out)
    return img


def _save_png(img, out) -> None:
    import io

    buf = io.BytesIO()
    img.save(buf, format=Image.registered_extensions().get(Path(out).suffix.lower(), "PNG"))
    write_atomic(out, buf.getvalue())


# Calibration of the decode estimate (benchmarks/decode_estimate.py: estimate vs measured peak and time):
_BYTES_PER_SYMBOL = 96    # index tensor (int64) and its Python list, the C++ vectors, the decoded list and tensors
_SYNTH_FLOATS = 1.75      # float32 per g_s pixel and channel: activations and native convolutions' im2col columns
_OUT_BYTES = 8            # per output pixel: the uint8 image, PIL's copy, PNG encoding
_BASE_BYTES = 96 << 20    # tables, interpreter slack, MSP's networks (with 64 MB its tiled 1024^2 decode peaked 3 MB above)
_SYMBOLS_PER_S = 1e6      # rANS decode with its Python list round trips, one core (a loaded 2-core machine)
_MACS_PER_S = 5e9         # g_s convolutions, one core


def synthesis_tiles(model, c: Container, tile: int) -> tuple[int, int]:
    """(pixels of the largest g_s call, pixels g_s computes in all, overlap included) for ``c`` at ``tile``."""
    p = pad_multiple_of(model)
    ph, pw = -(-c.height // p) * p, -(-c.width // p) * p
    try:
        scale, halo = synthesis_geometry(model.g_s) if tile > 0 else (0, 0)
    except NotTileable:
        scale = 0
    if not scale:
        return ph * pw, ph * pw
    H, W = ph // scale, pw // scale

    def spans(n):  # each tile's latent extent with its halo, clipped at the border
        return [min(a + tile + halo, n) - max(a - halo, 0) for a in range(0, n, tile)]

    rows, cols = spans(H), spans(W)
    return max(rows) * max(cols) * scale**2, sum(rows) * sum(cols) * scale**2


def estimate_decode(model, c: Container, layout: list[list[int]], tile: int = DEFAULT_TILE) -> dict[str, float]:
    """What decoding ``c`` will cost, from its header alone: peak bytes and seconds (rough, one CPU core), and
    the symbol count. The synthesis transform's activations grow with its largest tile (the padded image when
    untiled), the output with the image, the entropy decoder's lists with the symbols, the slack with both."""
    raw = model.raw_string_groups
    symbols = sum(n for gi, g in enumerate(layout) if gi not in raw for n in g)
    strings = sum(2 * (len(st) + (0 if gi in raw else rans_slack(len(st), n)))  # the bytes and pybind's copy
                  for gi, (g, ns) in enumerate(zip(c.strings, layout)) for st, n in zip(g, ns))
    peak_px, all_px = synthesis_tiles(model, c, tile)
    n = int(model.hparams_dict.get("N", 192))
    synth = peak_px * 4 * (_SYNTH_FLOATS * n + 12) + c.height * c.width * _OUT_BYTES
    return {"bytes": _BASE_BYTES + strings + symbols * _BYTES_PER_SYMBOL + synth, "symbols": symbols,
            "seconds": symbols / _SYMBOLS_PER_S + all_px * n * n * 4 / _MACS_PER_S}


def _use_rate_point(model, c: Container, source: str, ckpt: str) -> None:
    """A variable-rate model decodes at the rate point the header names; a header and a model that disagree on
    having one are refused."""
    n = len(model.rate_lambdas)
    if c.rate_point is None and n:
        raise ContainerError(f"{source}: {ckpt} holds a variable-rate model but the header names no rate point")
    if c.rate_point is not None and not c.rate_point < n:
        raise ContainerError(f"{source}: the header names rate point {c.rate_point} but {ckpt}'s model has "
                             f"{n or 'one fixed'} rate point(s); the file is corrupt or crafted")
    if n:
        model.set_rate_point(c.rate_point)


def _check_pixels(c: Container, max_pixels: int | None, source: str, warn: bool = True) -> None:
    if max_pixels is not None and c.height * c.width > max_pixels:
        raise ContainerError(f"{source}: the header declares a {c.height}x{c.width} image "
                             f"({c.height * c.width / 1e6:.1f} MP), above the decoder's limit of {max_pixels} pixels "
                             f"({max_pixels / 1e6:.1f} MP); if the file is yours, raise it with --max-pixels "
                             f"(decode_bytes(max_pixels=...))")
    if warn:
        warn_large(source, c.height, c.width)


@torch.no_grad()
def decode_bytes(data: bytes, model, meta: dict, source: str = "<bytes>", ckpt: str = "the checkpoint",
                 max_pixels: int | None = DEFAULT_MAX_PIXELS, memory_mb: int | None = DEFAULT_MEMORY_MB,
                 tile: int = DEFAULT_TILE):
    """A .clab file's bytes -> PIL image with an already built model. Everything about the file is checked before
    the entropy decoder runs: the container, the model and weights, the latent shape, the exact string layout the
    model writes, and what the header asks the decoder to spend (``max_pixels``; ``memory_mb`` against
    estimate_decode; None: no limit). Whatever the decoder raises on a payload that passed is a ContainerError.
    The synthesis transform runs ``tile`` latent units square at a time (models.tiling; 0, or a g_s that is not
    known to be local: the whole image at once), with the same pixels either way."""
    c = Container.from_bytes(data)
    if meta["model"].get("name") != c.model.get("name"):
        raise CheckpointError(f"{source} was encoded with model {c.model.get('name')!r} but {ckpt} holds "
                              f"{meta['model'].get('name')!r}")
    own = json.loads(json.dumps(meta["model"], sort_keys=True))  # as the encoder wrote it (tuples are lists)
    if c.model != own:  # the weights hash already pins the decoder; this catches an edited model record
        diff = sorted(k for k in set(own) | set(c.model) if own.get(k) != c.model.get(k))
        raise ContainerError(f"{source}: the header's model config differs from {ckpt}'s in {diff[:4]}; the file "
                             f"was changed after encoding or belongs to another checkpoint")
    digest = weights_hash(model)
    if digest != c.weights_hash:
        raise CheckpointError(f"{source} needs weights {c.weights_hash[:16]}... but {ckpt} has {digest[:16]}...; "
                              f"decode with the checkpoint that encoded it")
    _check_pixels(c, max_pixels, source)
    _use_rate_point(model, c, source, ckpt)
    expected = list(model.coded_shape(c.height, c.width))
    if c.shape != expected:
        raise ContainerError(f"{source}: header shape {c.shape} does not fit a {c.height}x{c.width} image for "
                             f"model {c.model.get('name')!r} (expected {expected}); the file is corrupt or crafted")
    layout = model.string_layout(c.shape)
    got, want = [len(g) for g in c.strings], [len(g) for g in layout]
    if got != want:  # a copied, dropped or split group would otherwise be ignored or misread
        raise ContainerError(f"{source}: {len(got)} string groups of {got} strings, but model "
                             f"{c.model.get('name')!r} writes {len(want)} groups of {want}; the file is corrupt or "
                             f"crafted")
    try:  # a header that claims more symbols than its strings can hold is refused before they are read
        model.check_strings(c.strings, c.shape)
    except ValueError as e:
        raise ContainerError(f"{source}: {e}; the header's image size is not the one encoded") from None
    except Exception as e:  # noqa: BLE001 - adaptive decodes its side string here: a payload error
        raise ContainerError(f"{source}: the entropy decoder rejected the payload: {type(e).__name__}: {e}") from e
    est = estimate_decode(model, c, layout, tile)
    if memory_mb is not None:
        limit = effective_memory_mb(memory_mb)
        if est["bytes"] > limit * 2**20:
            raise ContainerError(f"{source}: decoding this {c.height}x{c.width} file would need about "
                                 f"{est['bytes'] / 2**20:.0f} MB and {est['seconds']:.0f} s ({est['symbols']} "
                                 f"symbols; estimated from its header), above the memory limit of {limit} MB; if the "
                                 f"file is yours, raise "
                                 f"--memory-mb (decode_bytes(memory_mb=...))"
                                 + (" and the environment's `ulimit -v`" if limit < memory_mb else ""))
    raw = model.raw_string_groups
    strings = [[st if gi in raw else st + bytes(rans_slack(len(st), n)) for st, n in zip(g, ns)]
               for gi, (g, ns) in enumerate(zip(c.strings, layout))]
    n_groups = len(c.strings)
    try:
        with latent_only(model) as latents:  # the entropy decoder alone; g_s runs below, by tiles
            model.decompress(strings, torch.Size(c.shape))
    except Exception as e:  # noqa: BLE001 - the file passed every header check: whatever fails now is its payload
        raise ContainerError(f"{source}: the entropy decoder rejected the payload ({n_groups} strings): "
                             f"{type(e).__name__}: {e}") from e
    _, unpad = compute_padding(c.height, c.width, min_div=pad_multiple_of(model))
    box = (-unpad[2], -unpad[0], c.height, c.width)  # compute_padding's (left, right, top, bottom), negated
    try:
        synthesis_geometry(model.g_s)
    except NotTileable:
        tile = 0  # e.g. a user's block of unknown reach: the whole image at once, as before
    try:
        if len(latents) != 1:
            raise ValueError(f"the model ran g_s {len(latents)} times")
        g_s = model.g_s if all(p.device.type == "cpu" for p in model.g_s.parameters()) else \
            copy.deepcopy(model.g_s).cpu()  # always on the CPU: the same pixels whichever device decoded the latent
        arr = synthesize_rgb8(g_s, latents[0].cpu(), box, tile)
    except (ValueError, IndexError) as e:
        raise ContainerError(f"{source}: decoded size does not match the header {c.height}x{c.width} ({e})") from e
    return Image.fromarray(arr, mode="RGB")


if __name__ == "__main__":  # the isolated decoder: python -m compresslab.bitstream.codec - CKPT OUT.png SOURCE MB PX T
    _src = sys.argv[4] if len(sys.argv) > 4 else sys.argv[1]
    try:
        _data = sys.stdin.buffer.read(MAX_FILE_BYTES + 1) if sys.argv[1] == "-" else \
            read_regular_file(sys.argv[1], MAX_FILE_BYTES, "compressed file")
        _limits = {"memory_mb": int(sys.argv[5]), "max_pixels": int(sys.argv[6]), "tile": int(sys.argv[7])} \
            if len(sys.argv) > 7 else {}
        if len(sys.argv) > 8:
            _limits["device"] = sys.argv[8]
        _decompress_in_process(_data, sys.argv[2], sys.argv[3], source=_src, **_limits)
    except (ContainerError, CheckpointError) as e:
        sys.exit(f"{type(e).__name__}: {e}")
    except InputFileError as e:
        sys.exit(f"ContainerError: {e}")
    except Exception as e:  # noqa: BLE001 - anything else the payload provokes is still a bad file
        sys.exit(f"ContainerError: {_src}: the decoder rejected the payload ({type(e).__name__}: {e})")
