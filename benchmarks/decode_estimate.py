"""The decoder's memory/time estimate (codec.estimate_decode, what --memory-mb is checked against before decoding)
against what decoding really costs: real files of growing size per model, each decoded in a forked child that
measures its peak resident memory above the parent's (VmHWM after resetting it) and its wall time.

    python benchmarks/decode_estimate.py --sides 256 1024 2048 --out benchmarks/results/decode_estimate.md

Models: the smoke checkpoints of benchmarks/fuzz_decoder.py (--work). The inputs are Kodak's kodim05 resized.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

import torch  # noqa: E402

torch.set_num_threads(1)

from compresslab.bitstream import codec  # noqa: E402
from compresslab.bitstream.container import Container  # noqa: E402
from compresslab.models.from_checkpoint import build_model_from_checkpoint  # noqa: E402
from forked_peak import in_forked_child  # noqa: E402
from fuzz_decoder import MODELS, smoke_checkpoints  # noqa: E402


def measure(data: bytes, model, meta) -> dict:
    """Decode in a forked child; its peak RSS above its RSS at the start, and seconds."""
    def decode():
        codec.decode_bytes(data, model, meta, max_pixels=None, memory_mb=None)
        return {}

    out = in_forked_child(decode)
    return {"peak_bytes": out["peak_mb"] * 2**20, "seconds": out["seconds"]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sides", nargs="+", type=int, default=[256, 1024, 2048])
    ap.add_argument("--models", nargs="+", default=list(MODELS))
    ap.add_argument("--work", default=str(ROOT / "outputs" / "fuzz_models"))
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "decode_estimate.md"))
    a = ap.parse_args()
    from PIL import Image

    ckpts = smoke_checkpoints(Path(a.work))
    data_root = Path(os.environ.get("COMPRESSLAB_DATA", ROOT / "data"))
    tmp = Path(tempfile.mkdtemp())
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    t_all = time.monotonic()
    rows = []
    for name in a.models:
        model, meta = build_model_from_checkpoint(ckpts[name])
        for side in a.sides:
            src = tmp / f"{side}.png"
            Image.open(data_root / "kodak" / "kodim05.png").convert("RGB").resize((side, side)).save(src)
            codec.compress_file(ckpts[name], src, tmp / "f.clab")
            data = (tmp / "f.clab").read_bytes()
            c = Container.from_bytes(data)
            est = codec.estimate_decode(model, c, model.string_layout(c.shape))
            m = measure(data, model, meta)
            rows.append((name, model.hparams_dict.get("N"), side, len(data), est["symbols"], est["bytes"] / 2**20,
                         m["peak_bytes"] / 2**20, est["seconds"], m["seconds"]))
            print(rows[-1], flush=True)
    lines = ["# Decode estimate vs measured (codec.estimate_decode)", "",
             f"`python benchmarks/decode_estimate.py {' '.join(sys.argv[1:])}` at {commit[:10]}, "
             f"{platform.machine()}, {os.cpu_count()} cores, {time.strftime('%Y-%m-%d %H:%M')}, one thread; wall "
             f"time {time.monotonic() - t_all:.0f} s. Smoke-size models (N as listed); peak = the decoding child's "
             f"peak RSS above its RSS at the start.", "",
             "| model | N | side | file bytes | symbols | estimate MB | peak MB | estimate s | measured s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]} | {r[4]} | {r[5]:.0f} | {r[6]:.0f} | {r[7]:.2f} | "
                     f"{r[8]:.2f} |")
    Path(a.out).write_text("\n".join(lines) + "\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
