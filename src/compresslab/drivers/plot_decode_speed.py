"""Decode time vs image size (the MSP paper's speed figure, redrawn from our measured tables): latent decode seconds
(the entropy-decoding part, where the sequential step count matters) and full decode seconds per model, one CPU
thread. Reads benchmarks/results/decode_speed_latent_t1_<H>x<W>.txt (written by compresslab.drivers.decode_speed).

    python -m compresslab.drivers.plot_decode_speed [--out benchmarks/results/decode_speed_vs_size]
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

ROOT = Path.cwd()  # results are written relative to where the command runs
from compresslab.io.outdirs import guard, new_dir
from compresslab.reproduce import read_md_table


def load(results: Path) -> dict[str, list[tuple[float, float, float, int]]]:
    """model -> [(megapixels, latent s, decode s, sequential steps)] over the measured sizes."""
    out: dict[str, list[tuple[float, float, float, int]]] = {}
    for f in sorted(results.glob("decode_speed_latent_t1_*x*.txt")):
        h, w = map(int, re.search(r"(\d+)x(\d+)", f.stem).groups())
        for row in read_md_table(f):
            out.setdefault(row["model"], []).append((h * w / 1e6, float(row["latent s"]), float(row["decode s"]),
                                                     int(row["sequential steps"])))
    return {m: sorted(v) for m, v in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--results", default=str(ROOT / "benchmarks" / "results"))
    ap.add_argument("--out", default=None, help="file prefix (.png, .pdf; default: in a new outputs/plot_decode_speed/<id>/)")
    ap.add_argument("--publish", action="store_true", help="write benchmarks/results/decode_speed_vs_size (or --out) in place")
    a = ap.parse_args()
    published = ROOT / "benchmarks" / "results" / "decode_speed_vs_size"
    out = (Path(a.out or published) if a.publish else guard(a.out, False) if a.out
           else new_dir("plot_decode_speed") / published.name)
    data = load(Path(a.results))
    if not data:
        sys.exit(f"no decode_speed_latent_t1_*x*.txt tables in {a.results}; run compresslab.drivers.decode_speed first")
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    for model, pts in data.items():
        mp = [p[0] for p in pts]
        label = f"{model} ({pts[-1][3]} sequential steps at {pts[-1][0]:.1f} MP)"
        kept = [p for p in pts if p[1] > 0]  # a 0.00 s entry is below the timer's resolution: not drawn on a log axis
        axes[0].plot([p[0] for p in kept], [p[1] for p in kept], marker="o", label=label)
        axes[1].plot(mp, [p[2] for p in pts], marker="o", label=label)
    for ax, title in zip(axes, ("latent (entropy) decode", "full decode (latent + synthesis)")):
        ax.set_xlabel("image size (megapixels)")
        ax.set_ylabel("seconds (CPU, 1 thread, best of 2)")
        ax.set_yscale("log")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle("Decode time vs image size: untrained N=M=192 models, torch CPU (compresslab.drivers.decode_speed)")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out.with_suffix(".png"), dpi=150)
    fig.savefig(out.with_suffix(".pdf"))
    print(f"wrote {out.with_suffix('.png')} and .pdf ({len(data)} models)")


if __name__ == "__main__":
    from compresslab.errors import ConfigError

    try:
        main()
    except ConfigError as e:  # an output folder it may not write (published results without --publish): one line
        sys.exit(f"config error: {e}")
