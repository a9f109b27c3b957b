"""Encode on one device, decode the files on another, in another process: what a researcher does who compresses on
a GPU and ships the .clab files. Per model, over the first K Kodak images:

1. this process writes a checkpoint per model (given, or seeded random weights), runs `compress_file` on the encode
   device and decodes each file there too (`decompress_file`, the reference pixels);
2. a second process (this script with --decode-only) decodes every file with `decompress_file` on the decode device;
3. per model: how many files decode to the reference's pixels, how many decode to other pixels without an error (the
   failure that matters: a silently wrong image), and how many are refused with an error; times per image.

The synthesis transform always runs on the CPU (bitstream.codec), so equal pixels mean equal latents: a difference is
the entropy decoder picking other probability tables on the other device (CompressAI issues #20, #279, #309, #320).

    python benchmarks/cross_device_files.py --encode cuda --decode cpu --images 6 --work /tmp/xd --out xd.json \
        --models factorized hyperprior mbt2018-mean mbt2018-mean:det=0 mbt2018 mbt2018:det=1 \
        --ckpt mbt2018-mean=outputs/rd_cpu_ctx/mbt2018-mean/pretrain/checkpoints/last.ckpt
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from compresslab import models
from compresslab.bitstream.codec import compress_file, decompress_file
from compresslab.data.root import resolve_data_root
from compresslab.evaluation.evaluator import list_eval_images
from compresslab.io.checkpoints import load_checkpoint

SIZES = {"cheng2020-anchor": {"N": 64, "M": 64}, "cheng2020-attn": {"N": 64, "M": 64},
         "msp": {"N": 64, "M": 96, "profile": "fast", "transform": "gdn"}}


def spec_parts(spec: str) -> tuple[str, dict]:
    """'mbt2018:det=1' -> ('mbt2018', {'deterministic_coding': True})."""
    name, _, opts = spec.partition(":")
    extra = {}
    for kv in filter(None, opts.split(",")):
        k, _, v = kv.partition("=")
        if k != "det":
            raise SystemExit(f"{spec}: unknown option {k!r} (det=0|1)")
        extra["deterministic_coding"] = v == "1"
    return name, extra


def write_checkpoint(spec: str, ckpts: dict[str, str], path: Path) -> str:
    name, extra = spec_parts(spec)
    if name in ckpts:  # trained weights: the file's own model record, with the coding option asked for
        ckpt = load_checkpoint(ckpts[name])
        meta = dict(ckpt.get("compresslab") or {})
        meta["model"] = {**meta["model"], **extra}
        obj, weights = {"state_dict": ckpt["state_dict"], "compresslab": meta}, ckpts[name]
    else:
        torch.manual_seed(0)
        cfg = {"name": name, **SIZES.get(name, {"N": 64, "M": 96}), **extra}
        m = models.build(cfg)
        m.update(force=True)
        obj, weights = {"state_dict": m.state_dict(), "compresslab": {"model": cfg}}, "random (seed 0)"
    torch.save(obj, path)
    return weights


def pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def decode_all(work: Path, device: str) -> dict:
    """Phase 2 (its own process): every file under work/<model>/ decoded on ``device``."""
    out = {}
    for d in sorted(p for p in work.iterdir() if p.is_dir()):
        same = differ = errors = no_ref = 0
        maxdiff, secs, msgs = 0, 0.0, []
        for f in sorted(d.glob("*.clab")):
            t0 = time.perf_counter()
            try:
                img = decompress_file(f, d / "model.ckpt", isolate=False, device=device)
            except Exception as e:  # noqa: BLE001 - a refusal is a result here
                errors += 1
                msgs.append(f"{f.name}: {type(e).__name__}: {str(e)[:200]}")
                continue
            secs += time.perf_counter() - t0
            if not f.with_suffix(".ref.png").exists():
                no_ref += 1  # decoded here, but the encoder's device could not decode it: nothing to compare
                continue
            got, ref = np.asarray(img.convert("RGB")), pixels(f.with_suffix(".ref.png"))
            if np.array_equal(got, ref):
                same += 1
            else:
                differ += 1
                maxdiff = max(maxdiff, int(np.abs(got.astype(int) - ref.astype(int)).max()))
        n = same + differ + errors + no_ref
        out[d.name] = {"files": n, "same_pixels": same, "other_pixels_silently": differ, "refused": errors,
                       "decoded_without_reference": no_ref,
                       "max_pixel_diff": maxdiff, "decode_s": secs / max(1, same + differ), "errors": msgs[:3]}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--encode", default="cuda")
    ap.add_argument("--decode", default="cpu")
    ap.add_argument("--models", nargs="+", default=["factorized", "hyperprior", "mbt2018-mean", "mbt2018"])
    ap.add_argument("--ckpt", nargs="*", default=[], help="name=path: trained weights for that model")
    ap.add_argument("--images", type=int, default=6)
    ap.add_argument("--work", required=True, help="a new folder for checkpoints, files and reference pixels")
    ap.add_argument("--out", default=None, help="JSON report")
    ap.add_argument("--decode-only", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    work = Path(a.work)
    if a.decode_only:
        print(json.dumps(decode_all(work, a.decode)))
        return
    work.mkdir(parents=True)  # a new folder: never mixes files of two runs
    ckpts = dict(kv.split("=", 1) for kv in a.ckpt)
    images = list_eval_images(resolve_data_root() / "kodak", a.images)
    report = {"encode": a.encode, "decode": a.decode, "images": len(images), "torch": torch.__version__,
              "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None, "models": {}}
    for spec in a.models:
        d = work / spec.replace(":", "_").replace("=", "")
        d.mkdir()
        weights = write_checkpoint(spec, ckpts, d / "model.ckpt")
        t_enc = t_dec = 0.0
        ref_errors = []
        for img in images:
            f = d / (Path(img).stem + ".clab")
            t0 = time.perf_counter()
            compress_file(d / "model.ckpt", img, f, device=a.encode)
            t1 = time.perf_counter()
            try:  # the reference: the encoder's device decodes its own file
                decompress_file(f, d / "model.ckpt", f.with_suffix(".ref.png"), isolate=False, device=a.encode)
            except Exception as e:  # noqa: BLE001 - recorded; the other device still decodes the file
                ref_errors.append(f"{f.name}: {type(e).__name__}: {str(e)[:200]}")
            t_enc, t_dec = t_enc + t1 - t0, t_dec + time.perf_counter() - t1
        report["models"][d.name] = {"spec": spec, "weights": weights, "encode_s": t_enc / len(images),
                                    f"decode_{a.encode}_s": t_dec / len(images), "reference_errors": ref_errors}
        print(f"{spec}: encoded {len(images)} on {a.encode} ({t_enc / len(images):.2f} s/image)", flush=True)
    r = subprocess.run([sys.executable, __file__, "--decode-only", "--work", str(work), "--decode", a.decode],
                       capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"the decoding process failed: {r.stderr.strip().splitlines()[-1:]}")
    for name, res in json.loads(r.stdout.strip().splitlines()[-1]).items():
        report["models"][name].update({f"{a.decode}_{k}": v for k, v in res.items()})
        print(f"{report['models'][name]['spec']}: {a.encode} -> {a.decode} in another process: {res['same_pixels']}/"
              f"{res['files']} same pixels, {res['other_pixels_silently']} other pixels without an error (max |diff| "
              f"{res['max_pixel_diff']}), {res['refused']} refused; decode {res['decode_s']:.2f} s/image", flush=True)
    if a.out:
        Path(a.out).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
