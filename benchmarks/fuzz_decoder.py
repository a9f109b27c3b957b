"""Fuzz campaign over the decoder of all four models (issues 15/19/31), in-process (the path the API takes): N mutated files per model, each decoded in a
forked child with a time and memory limit; writes a JSON + Markdown summary (outcomes per model and per mutation).

    python benchmarks/fuzz_decoder.py --cases 10000 --out benchmarks/results/fuzz
    python benchmarks/fuzz_decoder.py --cases 2000 --no-slack --out /tmp/fuzz_noslack   # the decoder without slack

Models are smoke-size checkpoints trained here in a few seconds each (--work keeps them for the next run), or pass
--ckpt name=path. The input is a 128x128 crop of kodim05 (every model's minimum crop fits), coded for real.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

import torch  # noqa: E402

torch.set_num_threads(1)  # before any op: forked children must not inherit a live thread pool

from compresslab.models.from_checkpoint import build_model_from_checkpoint  # noqa: E402
from compresslab.bitstream import codec  # noqa: E402
from compresslab.bitstream.fuzz import MUTATIONS, MUST_REFUSE, campaign, run_cases, special_files  # noqa: E402

MODELS = ("factorized", "hyperprior", "msp", "adaptive")


def smoke_checkpoints(work: Path) -> dict[str, Path]:
    """Smoke-size models (debug=smoke), trained once per --work folder."""
    out = {}
    for name in MODELS:
        ckpt = work / name / "checkpoints" / "last.ckpt"
        if not ckpt.exists():
            extra = {"msp": ["model=msp/fast"], "adaptive": ["model=adaptive",
                                                             f"model.base_ckpt={out.get('factorized')}"]}
            cmd = [sys.executable, "train.py", *extra.get(name, [f"model={name}"]), "debug=smoke", "logger=csv",
                   "callbacks.rd_eval.enabled=false", f"hydra.run.dir={work / name}"]
            subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True)
        out[name] = ckpt
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", type=int, default=10000, help="per model")
    ap.add_argument("--models", nargs="+", default=list(MODELS))
    ap.add_argument("--ckpt", nargs="*", default=[], metavar="NAME=PATH")
    ap.add_argument("--work", default=str(ROOT / "outputs" / "fuzz_models"))
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds per case")
    ap.add_argument("--memory-mb", type=int, default=2048, help="address space per case, above the parent's")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-slack", action="store_true", help="decode without the zero slack (baseline)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "fuzz"))
    a = ap.parse_args()
    if a.no_slack:
        codec.rans_slack = lambda *a: 0
    ckpts = {**smoke_checkpoints(Path(a.work)), **dict(kv.split("=", 1) for kv in a.ckpt)}
    from PIL import Image

    data_root = Path(os.environ.get("COMPRESSLAB_DATA", ROOT / "data"))
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    src = Path(tempfile.mkdtemp()) / "input_kodim05_128.png"  # a crop of the data set: never in the results folder
    Image.open(data_root / "kodak" / "kodim05.png").convert("RGB").crop((0, 0, 128, 128)).save(src)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    summary = {"command": " ".join(["python", "benchmarks/fuzz_decoder.py", *sys.argv[1:]]), "commit": commit,
               "machine": f"{platform.machine()}, {os.cpu_count()} cores", "date": time.strftime("%Y-%m-%d %H:%M"),
               "slack": not a.no_slack, "models": {}}
    t_start = time.monotonic()
    for name in a.models:
        model, meta = build_model_from_checkpoint(ckpts[name])
        clab = out / f"{name}.clab"
        codec.compress_file(ckpts[name], src, clab)
        good = clab.read_bytes()
        codec.decode_bytes(good, model, meta)  # the untouched file decodes (and warms the tables up)
        res = campaign(lambda d: codec.decode_bytes(d, model, meta), good, a.cases, seed=a.seed,
                       timeout=a.timeout, memory_mb=a.memory_mb)
        # the path entry point, in-process as the API and the evaluator call it: special files
        paths = special_files(Path(tempfile.mkdtemp()))
        ckpt = ckpts[name]
        sp = run_cases(lambda p: codec.decompress_file(p.decode(), ckpt), [v.encode() for v in paths.values()],
                       timeout=a.timeout, memory_mb=a.memory_mb)
        res["special_files"] = {k: {x: v for x, v in r.items() if x != "seconds"} for k, r in zip(paths, sp)}
        res["by_mutation"]["special_files"] = dict(Counter(r["outcome"] for r in sp))
        for r in sp:
            res["outcomes"][r["outcome"]] = res["outcomes"].get(r["outcome"], 0) + 1
        res["silent_decodes_of_edited_payloads"] += sum(r["outcome"] == "decoded" for r in sp)
        summary["models"][name] = res
        print(f"{name}: {res['cases']} cases in {res['seconds']} s: {res['outcomes']}, silent decodes of edited "
              f"payloads {res['silent_decodes_of_edited_payloads']}", flush=True)
        clab.unlink()
    summary["wall_seconds"] = round(time.monotonic() - t_start, 1)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    lines = [f"# Decoder fuzz campaign ({'with' if summary['slack'] else 'without'} rANS slack)", "",
             f"`{summary['command']}` at {commit[:10]}, {summary['machine']}, {summary['date']}", "",
             "| model | cases | decoded | refused | uncaught | signal | hang | silent decodes (classes marked *) | s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, r in summary["models"].items():
        o = r["outcomes"]
        lines.append(f"| {name} | {r['cases']} | {o.get('decoded', 0)} | {o.get('refused', 0)} | "
                     f"{o.get('uncaught', 0)} | {o.get('signal', 0)} | {o.get('hang', 0)} | "
                     f"{r['silent_decodes_of_edited_payloads']} | {r['seconds']} |")
    names = list(summary["models"])
    lines += ["", "Per class (decoded / refused / other: uncaught, signal or hang); a decode in a class marked * is a "
              "finding (a changed file decoded silently):", "",
              "| class | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for m in (*MUTATIONS, "special_files"):
        cells = []
        for name in names:
            o = summary["models"][name]["by_mutation"].get(m, {})
            other = sum(v for k, v in o.items() if k not in ("decoded", "refused"))
            cells.append(f"{o.get('decoded', 0)} / {o.get('refused', 0)} / {other}")
        star = "*" if m in MUST_REFUSE or m == "special_files" else ""
        lines.append(f"| {m}{star} | " + " | ".join(cells) + " |")
    lines += ["", f"wall time: {summary['wall_seconds']} s"]
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out / 'summary.md'}")


if __name__ == "__main__":
    main()
