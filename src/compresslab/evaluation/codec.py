"""``compress`` an image file to a container and ``decompress`` it back, with the checks that make it safe."""

from __future__ import annotations

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

from ..checkpoints import CheckpointError, weights_hash
from ..models.from_checkpoint import build_model_from_checkpoint
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


def decompress_file(path: str | os.PathLike, ckpt: str | os.PathLike, out: str | os.PathLike | None = None,
                    isolate: bool = False, timeout: float = 600.0, memory_mb: int = 16384):
    """Decode a .clab file. ``isolate=True`` (the CLI's default for files from elsewhere) runs the entropy decoder in
    a child process with a memory limit and a timeout: CompressAI's C++ rANS decoder reads past its input on
    malformed strings (a crafted payload can SIGSEGV the process, and a segfault cannot be caught in Python), so
    its death becomes a ContainerError here. The header is parsed strictly in this process first either way."""
    if not isolate:
        return _decompress_in_process(path, ckpt, out)
    Container.from_bytes(Path(path).read_bytes())  # strict, cannot crash: refuse what is refusable without a child
    with tempfile.TemporaryDirectory() as td:
        png = Path(td) / "decoded.png"
        limit = int(memory_mb) << 20

        def limits():  # runs in the child before exec
            import resource

            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

        cmd = [sys.executable, "-m", "compresslab.evaluation.codec", str(path), str(ckpt), str(png)]
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, preexec_fn=limits)
        except subprocess.TimeoutExpired:
            raise ContainerError(f"{path}: decoding did not finish within {timeout:.0f} s; the payload is corrupt "
                                 f"or crafted") from None
        if r.returncode < 0:
            name = signal.Signals(-r.returncode).name
            raise ContainerError(f"{path}: the entropy decoder crashed ({name}) on this payload: the file is corrupt "
                                 f"or crafted (decoded in an isolated process; nothing else was affected)")
        if r.returncode != 0:
            lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
            msg = lines[-1] if lines else f"exit code {r.returncode}"
            kind, _, text = msg.partition(": ")
            err = CheckpointError if kind == "CheckpointError" else ContainerError
            raise err(text if kind in ("CheckpointError", "ContainerError") else f"{path}: decoder failed: {msg}")
        img = Image.open(png)
        img.load()
    if out is not None:
        img.save(out)
    return img


@torch.no_grad()
def _decompress_in_process(path: str | os.PathLike, ckpt: str | os.PathLike, out: str | os.PathLike | None = None):
    model, meta = build_model_from_checkpoint(ckpt)
    img = decode_bytes(Path(path).read_bytes(), model, meta, source=str(path), ckpt=str(ckpt))
    if out is not None:
        img.save(out)
    return img


def rans_slack(n_bytes: int) -> int:
    """Zero bytes appended to an entropy-coded string before decoding. CompressAI's rANS decoder reads 32-bit words
    forward from the start of the string and never checks its end: a malformed string makes it read past it
    (renormalisation after each symbol, and the escape path for out-of-range values, whose length field is read
    from the stream, so a crafted string can ask for many raw words). Reads that land in our zeros are harmless and
    deterministic, and zeros end an escape's length field; a valid string never reads them, so decoding is
    unchanged. This bounds the damage in practice (measured in benchmarks/fuzz_decoder.py); the isolated decoder
    (decompress_file(isolate=True), the CLI default) is what guarantees the caller survives any payload."""
    return (1 << 16) + 16 * n_bytes


@torch.no_grad()
def decode_bytes(data: bytes, model, meta: dict, source: str = "<bytes>", ckpt: str = "the checkpoint"):
    """A .clab file's bytes -> PIL image with an already built model. Everything about the file is checked before
    the entropy decoder runs; whatever the decoder raises on a payload that passed those checks is a ContainerError."""
    c = Container.from_bytes(data)
    if meta["model"].get("name") != c.model.get("name"):
        raise CheckpointError(f"{source} was encoded with model {c.model.get('name')!r} but {ckpt} holds "
                              f"{meta['model'].get('name')!r}")
    digest = weights_hash(model)
    if digest != c.weights_hash:
        raise CheckpointError(f"{source} needs weights {c.weights_hash[:16]}... but {ckpt} has {digest[:16]}...; "
                              f"decode with the checkpoint that encoded it")
    n_groups = len(c.strings)
    if any(len(g) != 1 for g in c.strings) or len(c.shape) != 2 or min(c.shape) <= 0:
        raise ContainerError(f"{source}: unexpected string layout {[len(g) for g in c.strings]} / shape {c.shape}")
    expected = list(model.coded_shape(c.height, c.width))
    if c.shape != expected:
        raise ContainerError(f"{source}: header shape {c.shape} does not fit a {c.height}x{c.width} image for "
                             f"model {c.model.get('name')!r} (expected {expected}); the file is corrupt or crafted")
    raw = getattr(model, "raw_string_groups", frozenset())
    strings = [[st if gi in raw else st + bytes(rans_slack(len(st))) for st in g] for gi, g in enumerate(c.strings)]
    try:
        dec = model.decompress(strings, torch.Size(c.shape))
    except Exception as e:  # noqa: BLE001 - the file passed every header check: whatever fails now is its payload
        raise ContainerError(f"{source}: the entropy decoder rejected the payload ({n_groups} strings): "
                             f"{type(e).__name__}: {e}") from e
    _, unpad = compute_padding(c.height, c.width, min_div=getattr(model, "pad_multiple", 64))
    x_hat = F.pad(dec["x_hat"], unpad)
    if tuple(x_hat.shape[-2:]) != (c.height, c.width):
        raise ContainerError(f"{source}: decoded size {tuple(x_hat.shape[-2:])} does not match the header "
                             f"{c.height}x{c.width}")
    arr = (x_hat[0].nan_to_num(0.0).clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(arr, mode="RGB")


if __name__ == "__main__":  # the isolated decoder: python -m compresslab.evaluation.codec FILE CKPT OUT.png
    try:
        _decompress_in_process(sys.argv[1], sys.argv[2], sys.argv[3])
    except (ContainerError, CheckpointError) as e:
        sys.exit(f"{type(e).__name__}: {e}")
    except Exception as e:  # noqa: BLE001 - anything else the payload provokes is still a bad file
        sys.exit(f"ContainerError: {sys.argv[1]}: the decoder rejected the payload ({type(e).__name__}: {e})")
