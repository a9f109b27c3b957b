"""Decode time and sequential step count vs image size: MSP profiles vs CompressAI's serial and checkerboard context
models, same machine, same process, entropy coding included.

    python -m compresslab.drivers.decode_speed [--sizes 512x768 1024x1536 1024x2048] [--threads 2] [--repeats 1] \
        [--out benchmarks/results/<name>.txt]

--out writes the table with its command, machine, commit and wall time above it (the file a report reads).

Weights are untrained (random initialisation, N=M=192 for all models), which is fine for timing: the work per step
does not depend on the weights, only the bitrate (and so the rANS share) does. Images are Kodak kodim23 resized to
each size. "steps" = sequential network evaluations of the decoder's probability model: MSP S*P*(K+1) (+1 coarsest
EntropyBottleneck decode); mbt2018 one context step per latent position; checkerboard 2 passes.
"latent s" = decode time minus the synthesis transform g_s (timed alone on the same latent, best of the same
repeats): the part the probability model is responsible for. On a CPU, g_s at N=192 takes much of the decode time
and hides the difference between probability models.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch
import torch.nn.functional as F
from compressai.models import Cheng2020AnchorCheckerboard, JointAutoregressiveHierarchicalPriors
from compressai.ops import compute_padding
from PIL import Image

ROOT = Path.cwd()  # results are written relative to where the command runs
from compresslab import models
from compresslab.data.images import image_to_tensor
from compresslab.data.root import resolve_data_root
from compresslab.io.outdirs import guard
from compresslab.models.base import pad_multiple_of


def image(h: int, w: int) -> torch.Tensor:
    src = Image.open(resolve_data_root() / "kodak" / "kodim23.png").convert("RGB")
    return image_to_tensor(src.resize((w, h), Image.BICUBIC)).unsqueeze(0)


def time_decode(model, x, repeats: int) -> tuple[float, float, float, int]:
    pad, _ = compute_padding(*x.shape[-2:], min_div=pad_multiple_of(model))
    xp = F.pad(x, pad)
    with torch.no_grad():
        enc = model.compress(xp)
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            dec = model.decompress(enc["strings"], enc["shape"])
            best = min(best, time.perf_counter() - t0)
        y = model.g_a(xp)
        synth = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            model.g_s(y)
            synth = min(synth, time.perf_counter() - t0)
    nbytes = sum(len(s) for group in enc["strings"] for s in group)
    steps = dec.get("network_evaluations")
    if steps is None:  # CompressAI models: serial = one step per latent position; checkerboard = two passes
        h, w = xp.shape[-2] // 16, xp.shape[-1] // 16
        steps = 2 if isinstance(model, Cheng2020AnchorCheckerboard) else h * w
    else:
        steps += 1  # the coarsest scale's EntropyBottleneck decode
    return best, max(best - synth, 0.0), nbytes * 8 / (x.shape[-2] * x.shape[-1]), steps


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", nargs="+", default=["512x768", "1024x1536", "1024x2048"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--skip-serial-above", type=int, default=10**9, help="skip mbt2018 above this many pixels")
    ap.add_argument("--N", type=int, default=192, help="channels of every model (the RD recipes' profile: 64)")
    ap.add_argument("--M", type=int, default=192, help="latent channels (the RD recipes' profile: 96)")
    ap.add_argument("--profiles", nargs="+", default=["fast", "normal", "extra"], help="MSP profiles to time")
    ap.add_argument("--scales", type=int, default=None, help="MSP scales S (the RD recipes' MSP-fast: 2)")
    ap.add_argument("--transform", default=None, help="MSP transforms (gdn: the hyperprior's, as the RD recipes)")
    ap.add_argument("--out", help="also write the table (with command, machine, commit, wall time) to this file")
    ap.add_argument("--publish", action="store_true", help="--out may be a published file (benchmarks/results/)")
    a = ap.parse_args()
    if a.out:  # checked before the timing, not after it
        guard(a.out, a.publish)
    started, t0 = datetime.now(timezone.utc).isoformat(timespec="seconds"), time.monotonic()
    lines: list[str] = []

    def emit(line: str) -> None:
        lines.append(line)
        print(line, flush=True)

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    msp = {k: v for k, v in (("scales", a.scales), ("transform", a.transform)) if v is not None}
    candidates = {
        "mbt2018 (serial)": JointAutoregressiveHierarchicalPriors(a.N, a.M),
        "cheng2020 checkerboard": Cheng2020AnchorCheckerboard(a.N),
        **{f"msp-{p}": models.build({"name": "msp", "N": a.N, "M": a.M, "profile": p, **msp}) for p in a.profiles},
    }
    for m in candidates.values():
        m.eval().update(force=True)
    emit(f"# decode seconds (best of {a.repeats}), torch {torch.__version__}, {a.threads} threads, "
          f"{os.cpu_count()} CPUs, untrained weights N={a.N} M={a.M} (checkerboard M=N)"
          + (f", MSP {msp}" if msp else ""))
    emit("| image | model | sequential steps | decode s | x faster than mbt2018 | x vs checkerboard | latent s "
          "| latent x faster than mbt2018 | bpp |")
    emit("|---|---|---|---|---|---|---|---|---|")
    for size in a.sizes:
        h, w = map(int, size.split("x"))
        x = image(h, w)
        rows = {}
        for name, m in candidates.items():
            if name.startswith("mbt2018") and h * w > a.skip_serial_above:
                continue
            rows[name] = time_decode(m, x, a.repeats)
        ref, ref_lat = rows.get("mbt2018 (serial)", (None, None))[:2]
        cb = rows["cheng2020 checkerboard"][0]
        for name, (t, lat, bpp, steps) in rows.items():
            vs_ref = f"{ref / t:.1f}" if ref else "skipped"
            vs_lat = f"{ref_lat / lat:.1f}" if ref and lat > 0 else "n/a"
            emit(f"| {h}x{w} | {name} | {steps} | {t:.2f} | {vs_ref} | {cb / t:.2f} | {lat:.2f} | {vs_lat} "
                 f"| {bpp:.3f} |")

    if a.out:
        from compresslab.provenance import command_record

        rec = command_record(["python", "-m", "compresslab.drivers.decode_speed", *sys.argv[1:]], started,
                             time.monotonic() - t0)
        m = rec["machine"]
        commit = (rec["commit"] or "unknown")[:10] + (" (dirty tree)" if rec["dirty"] else "")
        head = [f"# command: {' '.join(rec['command'])}",
                f"# machine: {m['cpu']}, {os.cpu_count()} CPUs, GPU {m['gpu'] or 'none'}; python {m['python']}, "
                f"torch {m['torch']}, compressai {m['compressai']}; commit {commit}; started {rec['started_utc']}, "
                f"wall {rec['wall_s']} s"]
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text("\n".join(head + lines) + "\n")


if __name__ == "__main__":
    from compresslab.errors import ConfigError

    try:
        main()
    except ConfigError as e:  # an output folder it may not write (published results without --publish): one line
        sys.exit(f"config error: {e}")
