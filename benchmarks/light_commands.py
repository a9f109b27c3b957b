"""Start-up cost of the light commands: this checkout against an older commit (default 26875f2, the last single-file
cli.py, which imported torch for every command), whole processes, alternated, same interpreter and venv.

    .venv/bin/python benchmarks/light_commands.py [--before 26875f2] [--repeat 5] [--out benchmarks/results/...]

The old tree is exported with `git archive` into a temporary folder and put first on PYTHONPATH; the current one is
this checkout. Each command is run `--repeat` times per side, the sides alternating, and the median wall time and
whether the process imported torch (from `python -X importtime`) are reported. Wall times depend on the machine's
load; the torch column does not.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from datetime import datetime, timezone
from io import BytesIO
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ANCHORS = "src/compresslab/anchor_data/kodak"
COMMANDS = {
    "--help": ["--help"],
    "bd-rate (names)": ["bd-rate", "kodak/vtm", "kodak/compressai-bmshj2018-factorized_mse_cpu"],
    "bd-rate (files)": ["bd-rate", f"{ANCHORS}/compressai-bmshj2018-factorized_mse_cpu.json",
                        f"{ANCHORS}/compressai-bmshj2018-hyperprior_mse_cpu.json"],
    "rd (rd.json)": ["rd", "experiments/gpu_scale/runs/hyperprior-0.0035/rd.json",
                     "experiments/gpu_scale/runs/hyperprior-0.0067/rd.json", "--out", "{tmp}/rd"],
    "anchors": ["anchors"],
    "evaluate nothere.ckpt": ["evaluate", "nothere.ckpt"],
}


def run(args: list[str], src: Path, tmp: str) -> tuple[float, bool, int]:
    env = {k: v for k, v in os.environ.items() if k != "COMPRESSLAB_DATA"}
    env["PYTHONPATH"] = str(src)
    cmd = [sys.executable, "-X", "importtime", "-m", "compresslab", *[a.replace("{tmp}", tmp) for a in args]]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    wall = time.perf_counter() - t0
    # "import time:   self |  cumulative |     torch.nn": the last column, indented by nesting
    torch = any(line.rsplit("|", 1)[-1].strip() == "torch" for line in r.stderr.splitlines()
                if line.startswith("import time:"))
    return wall, torch, r.returncode


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--before", default="26875f2")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--out", help="write the table here (Markdown)")
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as td:
        old = Path(td) / "old"
        blob = subprocess.run(["git", "archive", a.before, "src"], cwd=REPO, capture_output=True, check=True).stdout
        tarfile.open(fileobj=BytesIO(blob)).extractall(old)
        sides = {"before": old / "src", "now": REPO / "src"}
        rows = []
        for name, args in COMMANDS.items():
            walls: dict[str, list[float]] = {s: [] for s in sides}
            torch: dict[str, bool] = {}
            rcs: dict[str, int] = {}
            for _ in range(a.repeat):
                for side, src in sides.items():  # alternated: a load change hits both sides alike
                    w, t, rc = run(args, src, td)
                    walls[side].append(w)
                    torch[side], rcs[side] = t, rc
            b, n = statistics.median(walls["before"]), statistics.median(walls["now"])
            rows.append(f"| `compresslab {' '.join(args).replace('{tmp}', '<tmp>')}` | {b:.2f} s | "
                        f"{'yes' if torch['before'] else 'no'} | {n:.2f} s | {'yes' if torch['now'] else 'no'} | "
                        f"{b / n:.1f}x | {rcs['before']}/{rcs['now']} |")
            print(rows[-1], flush=True)
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout
    load = os.getloadavg()[0]
    text = (f"# Light commands: start-up, before ({a.before}) vs now ({head.strip()})\n\n"
            f"`.venv/bin/python benchmarks/light_commands.py --repeat {a.repeat}` on "
            f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, Python {platform.python_version()}, {os.cpu_count()} "
            f"cores, load average {load:.1f} at the end (shared machine: wall times scale with load; the torch "
            f"columns do not). Median of {a.repeat} whole-process runs per side, alternated.\n\n"
            "| command | before | torch imported | now | torch imported | speed-up | exit before/now |\n"
            "|---|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n")
    if a.out:
        Path(a.out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
