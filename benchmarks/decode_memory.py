"""Decoding's peak memory per megapixel with the synthesis transform tiled (conf/decode.yaml's tile) and untiled
(tile 0), side by side in one run, and what the worst crafted file costs under the default limits.

    python benchmarks/decode_memory.py --out benchmarks/results/decode_memory.json

1. factorized and hyperprior at N=128/M=192 (CompressAI's sizes for the low rates; untrained weights: memory and
   time depend on the sizes, not on training), a 768x512 and a 2048x2048 synthetic image; each file decoded by
   codec.decode_bytes in a forked child (peak RSS above the child's RSS at its start, VmHWM reset), untiled then
   tiled; the decoded pixels compared.
2. crafted files: the smoke models of benchmarks/fuzz_decoder.py (trained, so their tables make symbols cheap), a
   header declaring a side x side image with zero strings of the least length the decoder's bounds accept
   (entropy.bounds), decoded in a forked child with the default limits: outcome, seconds, peak MB, MB of pixels out.
Writes the JSON (rows read by docs/evaluation.md's markers) and a Markdown table beside it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

import numpy as np  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

from compresslab.bitstream import codec  # noqa: E402
from compresslab.bitstream.container import Container, ContainerError  # noqa: E402
from compresslab.entropy.bounds import min_string_bytes  # noqa: E402
from compresslab.models.from_checkpoint import build_model_from_checkpoint  # noqa: E402
from forked_peak import in_forked_child  # noqa: E402
from fuzz_decoder import smoke_checkpoints  # noqa: E402


def tiny_ckpt(path: Path, name: str) -> Path:
    from compresslab import models
    from compresslab.io.checkpoints import atomic_torch_save

    cfg = {"name": name, "N": 128, "M": 192}
    torch.manual_seed(0)
    model = models.build(cfg)
    with torch.no_grad():  # latents not all zero, pixels not one grey (as tests/test_tiled_decode.py)
        model.g_a[-1].weight.mul_(50)
        model.g_s[-1].weight.mul_(5)
        model.g_s[-1].bias.fill_(0.5)
    atomic_torch_save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
                       "compresslab": {"model": cfg}}, path)
    return path


def synthetic(path: Path, w: int, h: int) -> None:
    from PIL import Image

    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([xx / 8, yy / 8, (xx + yy) / 16], -1) % 256 + np.random.default_rng(0).normal(0, 12, (h, w, 3))
    Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(path)


def peak_rows(tmp: Path, tiles: list[int]) -> list[dict]:
    rows = []
    for name in ("factorized", "hyperprior"):
        ckpt = tiny_ckpt(tmp / f"{name}.ckpt", name)
        model, meta = build_model_from_checkpoint(ckpt)
        for w, h in ((768, 512), (2048, 2048)):
            synthetic(tmp / "in.png", w, h)
            codec.compress_file(ckpt, tmp / "in.png", tmp / "x.clab")
            data = (tmp / "x.clab").read_bytes()
            c = Container.from_bytes(data)
            for tile in tiles:
                def decode(tile=tile):
                    img = codec.decode_bytes(data, model, meta, max_pixels=None, memory_mb=None, tile=tile)
                    return {"sha256": hashlib.sha256(img.tobytes()).hexdigest()}

                m = in_forked_child(decode, refused=ContainerError)
                est = codec.estimate_decode(model, c, model.string_layout(c.shape), tile)
                rows.append({"model": name, "image": f"{w}x{h}", "mp": w * h / 1e6, "tile": tile,
                             "peak_mb": m["peak_mb"], "peak_mb_per_mp": m["peak_mb"] / (w * h / 1e6),
                             "estimate_mb": est["bytes"] / 2**20, "seconds": m["seconds"], "sha256": m["sha256"]})
                print(rows[-1], flush=True)
            pair = [r for r in rows[-len(tiles):]]
            for r in pair:
                r["identical"] = len({p["sha256"] for p in pair}) == 1
    return rows


def crafted_rows(ckpts: dict, sides: list[int]) -> list[dict]:
    rows = []
    for name, ckpt in ckpts.items():
        model, meta = build_model_from_checkpoint(ckpt)
        weights = codec.weights_hash(model)
        for side in sides:
            shape = list(model.coded_shape(side, side))
            strings = [[bytes(max(1, min_string_bytes(n, t) if t is not None else 1)) for n in ns]
                       for ns, t in zip(model.string_layout(shape), model.string_tables())]
            data = Container(meta["model"], weights, side, side, shape, strings).to_bytes()

            def decode(data=data):
                img = codec.decode_bytes(data, model, meta)
                return {"outcome": "decoded", "out_mb": len(img.tobytes()) / 2**20}

            m = in_forked_child(decode, refused=ContainerError)
            rows.append({"model": name, "side": side, "file_bytes": len(data), "outcome": m["outcome"],
                         "seconds": m["seconds"], "peak_mb": m["peak_mb"], "out_mb": m.get("out_mb", 0.0)})
            print(rows[-1], flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "decode_memory.json"))
    ap.add_argument("--work", default=str(ROOT / "outputs" / "fuzz_models"))
    ap.add_argument("--sides", nargs="+", type=int, default=[1024, 2048, 4096, 8192])
    a = ap.parse_args()
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    t_all = time.monotonic()
    tmp = Path(tempfile.mkdtemp())
    import fuzz_decoder

    fuzz_decoder.MODELS = ("factorized", "hyperprior")  # the two whose g_s the tile test covers
    peaks = peak_rows(tmp, [0, codec.DEFAULT_TILE])
    crafted = crafted_rows(smoke_checkpoints(Path(a.work)), a.sides)
    decoded = [r for r in crafted if r["outcome"] == "decoded"] or crafted
    worst = max(decoded, key=lambda r: (r["out_mb"] / r["file_bytes"], r["seconds"]))
    doc = {"command": f"python benchmarks/decode_memory.py {' '.join(sys.argv[1:])}".strip(), "commit": commit[:10],
           "machine": f"{platform.machine()}, {os.cpu_count()} cores (shared), torch {torch.__version__}, one thread",
           "date": time.strftime("%Y-%m-%d %H:%M"), "wall_s": round(time.monotonic() - t_all),
           "default_tile": codec.DEFAULT_TILE, "rows": peaks, "crafted": crafted, "worst_crafted": worst}
    Path(a.out).write_text(json.dumps(doc, indent=1) + "\n")
    lines = ["# Decode peak memory, tiled vs untiled, and crafted files", "",
             f"`{doc['command']}` at {doc['commit']}, {doc['machine']}, {doc['date']}; wall time {doc['wall_s']} s. "
             f"Peak = the decoding child's peak RSS above its start; tile in latent units (0: untiled).", "",
             "| model | image | tile | peak MB | MB per MP | estimate MB | seconds | same pixels |",
             "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['image']} | {r['tile']} | {r['peak_mb']:.0f} | {r['peak_mb_per_mp']:.0f} | "
              f"{r['estimate_mb']:.0f} | {r['seconds']:.1f} | {r['identical']} |" for r in peaks]
    lines += ["", "Crafted files (smoke models, least strings the bounds accept, default limits):", "",
              "| model | side | file bytes | outcome | seconds | peak MB | MB out |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['side']} | {r['file_bytes']} | {r['outcome']} | {r['seconds']:.2f} | "
              f"{r['peak_mb']:.0f} | {r['out_mb']:.1f} |" for r in crafted]
    Path(a.out).with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
