"""Issue 31's header-only lies (payload untouched, image size enlarged with a consistent latent shape), decoded
in-process with the default limits: outcome, seconds and peak resident memory above the start, per model and size,
each in a forked child (VmHWM reset at its start).

    python benchmarks/header_lies.py --out benchmarks/results/header_lies.md
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
from compresslab.bitstream.container import Container, ContainerError  # noqa: E402
from compresslab.models.from_checkpoint import build_model_from_checkpoint  # noqa: E402
from forked_peak import in_forked_child  # noqa: E402
from fuzz_decoder import MODELS, smoke_checkpoints  # noqa: E402

def attempt(data: bytes, model, meta) -> dict:
    def decode():
        codec.decode_bytes(data, model, meta)
        return {"outcome": "decoded"}
    return in_forked_child(decode, refused=ContainerError)


SIZES = ((1024, 1024), (4096, 4096), (8192, 8192), (16384, 16384), (32768, 8192))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default=str(ROOT / "outputs" / "fuzz_models"))
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "header_lies.md"))
    a = ap.parse_args()
    from PIL import Image

    ckpts = smoke_checkpoints(Path(a.work))
    src = Path(tempfile.mkdtemp()) / "in.png"
    data_root = Path(os.environ.get("COMPRESSLAB_DATA", ROOT / "data"))
    Image.open(data_root / "kodak" / "kodim05.png").convert("RGB").crop((0, 0, 128, 128)).save(src)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    t_all = time.monotonic()
    rows = []
    for name in MODELS:
        model, meta = build_model_from_checkpoint(ckpts[name])
        codec.compress_file(ckpts[name], src, src.with_suffix(".clab"))
        good = src.with_suffix(".clab").read_bytes()
        c = Container.from_bytes(good)
        for h, w in SIZES:
            lie = Container(c.model, c.weights_hash, h, w, list(model.coded_shape(h, w)), c.strings).to_bytes()
            r = attempt(lie, model, meta)
            rows.append((name, f"{h}x{w}", len(lie), r["outcome"], r["seconds"], r["peak_mb"]))
            print(rows[-1], flush=True)
    lines = ["# Header-only lies, in-process, default limits", "",
             f"`python benchmarks/header_lies.py {' '.join(sys.argv[1:])}` at {commit[:10]}, {platform.machine()}, "
             f"{os.cpu_count()} cores (shared), {time.strftime('%Y-%m-%d %H:%M')}; wall time "
             f"{time.monotonic() - t_all:.0f} s. A 128x128 file of each smoke model with its header's size enlarged "
             f"and the latent shape to match; peak = the child's peak RSS above its start.", "",
             "| model | declared size | file bytes | outcome | seconds | peak MB |", "|---|---|---|---|---|---|"]
    lines += [f"| {r[0]} | {r[1]} | {r[2]} | {r[3]} | {r[4]:.4f} | {r[5]:.1f} |" for r in rows]
    Path(a.out).write_text("\n".join(lines) + "\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
