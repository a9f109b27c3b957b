"""`compresslab evaluate` against CompressAI's `eval_model` on the same exported weights and images: whole processes
(start-up included), paired and alternated, wall and CPU time (user + sys of the child), and their numbers side by side.

    .venv/bin/python benchmarks/eval_vs_compressai.py [--ckpt X.ckpt] [--images DIR] [--max-images 24] [--repeat 3]
                                                      [--out benchmarks/results/eval_vs_compressai_cpu.md]

Without --ckpt a factorized model (N=128, M=192: the standard size) is built with seed 0 and not trained: the cost of
the transforms and the coder is what is measured, not its RD point. The checkpoint is exported with `compresslab
export` (CompressAI's state dict, as its message says eval_model loads it) and both tools evaluate that one file.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def child_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def timed(cmd: list[str]) -> tuple[float, float, str]:
    c0, t0 = child_cpu(), time.perf_counter()
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env={**os.environ, "WANDB_MODE": "offline"})
    wall, cpu = time.perf_counter() - t0, child_cpu() - c0
    if r.returncode:
        sys.exit(f"`{' '.join(cmd)}` failed:\n{r.stderr[-3000:]}")
    return wall, cpu, r.stdout


def random_checkpoint(path: Path) -> None:
    import torch

    from compresslab import models
    from compresslab.io.checkpoints import atomic_torch_save

    torch.manual_seed(0)
    cfg = {"name": "factorized", "N": 128, "M": 192}
    m = models.build(cfg)
    atomic_torch_save({"state_dict": {f"model.{k}": v for k, v in m.state_dict().items()},
                       "compresslab": {"model": cfg}}, path)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ckpt", help="a factorized checkpoint (default: N=128, M=192 at seed 0, untrained)")
    p.add_argument("--images", default=str(Path(os.environ.get("COMPRESSLAB_DATA", "data")) / "kodak"))
    p.add_argument("--max-images", type=int, default=24)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--out", help="write the table here (Markdown)")
    a = p.parse_args()
    py = sys.executable
    with tempfile.TemporaryDirectory() as td:
        td = Path(td)
        ckpt = Path(a.ckpt) if a.ckpt else td / "random.ckpt"
        if not a.ckpt:
            random_checkpoint(ckpt)
        weights = td / "model.pth.tar"
        timed([py, "-m", "compresslab", "export", str(ckpt), str(weights)])
        images = td / "images"  # the same files for both (eval_model takes a whole folder)
        images.mkdir()
        for f in sorted(Path(a.images).glob("*.png"))[: a.max_images]:
            shutil.copy(f, images / f.name)
        n = len(list(images.iterdir()))
        cmds = {"compresslab evaluate": [py, "-m", "compresslab", "evaluate", str(weights), "--model", "factorized",
                                         "--images", str(images), "--out", str(td / "ours.json")],
                "eval_model": [py, "-m", "compressai.utils.eval_model", "checkpoint", str(images), "-a",
                               "bmshj2018-factorized", "-p", str(weights)]}
        runs: dict[str, list[tuple[float, float]]] = {k: [] for k in cmds}
        outputs: dict[str, str] = {}
        for i in range(a.repeat):
            order = list(cmds) if i % 2 == 0 else list(cmds)[::-1]  # alternated: a drift in load hits both alike
            for k in order:
                wall, cpu, out = timed(cmds[k])
                runs[k].append((wall, cpu))
                outputs[k] = out
                print(f"run {i + 1} {k}: wall {wall:.1f} s, cpu {cpu:.1f} s", flush=True)
        ours = json.loads((td / "ours.json").read_text())["results"]
        theirs = json.loads(outputs["eval_model"][outputs["eval_model"].index("{"):])["results"]
    med = {k: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v)) for k, v in runs.items()}
    (ow, oc), (tw, tc) = med["compresslab evaluate"], med["eval_model"]
    pairs = [f"{o[0] / t[0]:.2f}" for o, t in zip(runs["compresslab evaluate"], runs["eval_model"])]
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout
    text = (
        f"# `compresslab evaluate` vs CompressAI's `eval_model`: same weights, same {n} images\n\n"
        f"`.venv/bin/python benchmarks/eval_vs_compressai.py --max-images {a.max_images} --repeat {a.repeat}` at "
        f"{head.strip()}, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, Python {platform.python_version()}, "
        f"{len(os.sched_getaffinity(0))} usable cores, load average {os.getloadavg()[0]:.1f} at the end (a shared "
        f"machine: both sides alternate, so they see the same load). Weights: "
        f"{a.ckpt or 'factorized N=128 M=192, seed 0, untrained'}, exported with `compresslab export`. Whole "
        f"processes, start-up included; median of {a.repeat} runs each.\n\n"
        "| | wall | CPU (user+sys) | bpp | PSNR (dB) | MS-SSIM |\n|---|---|---|---|---|---|\n"
        f"| `compresslab evaluate` | {ow:.1f} s | {oc:.1f} s | {ours['bpp'][0]:.6f} | {ours['psnr-rgb'][0]:.6f} | "
        f"{ours['ms-ssim-rgb'][0]:.6f} |\n"
        f"| `eval_model` | {tw:.1f} s | {tc:.1f} s | {theirs['bpp'][0]:.6f} | {theirs['psnr-rgb'][0]:.6f} | "
        f"{theirs['ms-ssim-rgb'][0]:.6f} |\n"
        f"| ours ÷ eval_model | {ow / tw:.2f} | {oc / tc:.2f} | | | |\n\n"
        f"Wall ratio per pair: {', '.join(pairs)}. Ours also computes, per image, the likelihood estimate (a forward "
        f"pass), the real/estimated ratio, the latent check and MS-SSIM in dB.\n")
    if a.out:
        Path(a.out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
