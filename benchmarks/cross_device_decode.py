"""Encode on one device, decode on another (CompressAI issues #20, #279, #309, #320): per model, on how many Kodak
images the other device decodes different latents from the same bitstream (a real decoding failure: the entropy
decoder picked other probability tables), how many reconstructions differ in any 8-bit pixel (this also counts
float differences of g_s between devices, e.g. TF32 convolutions on a GPU), and the time of each path.

    python benchmarks/cross_device_decode.py --encode cuda --decode cpu --models factorized hyperprior msp adaptive \
        --ckpt factorized=<factorized.ckpt or state dict> [--max-images 24]

Models without a checkpoint are built with seeded random weights (their CDF tables come from update(force=True)),
which exercises the table selection on the decode side but not a trained model's scale distribution.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F
from compressai.ops import compute_padding

from compresslab import models
from compresslab.models.from_checkpoint import build_model_from_checkpoint
from compresslab.data.images import load_image_tensor
from compresslab.data.root import resolve_data_root
from compresslab.evaluation.evaluator import list_eval_images

SIZES = {"factorized": {"N": 128, "M": 192}, "hyperprior": {"N": 128, "M": 192},
         "msp": {"N": 192, "M": 192, "profile": "fast", "transform": "gdn"}}


def build(name: str, ckpts: dict[str, str]):
    torch.manual_seed(0)
    if name == "adaptive":
        base = ckpts.get("factorized")
        m = models.build({"name": "adaptive", "base_ckpt": base, **SIZES["factorized"]})
    elif name in ckpts:  # a trained model: its own size from the checkpoint
        m, _ = build_model_from_checkpoint(ckpts[name])
    else:
        m = models.build({"name": name, **SIZES[name]})
    m.eval()
    m.update(force=True)
    return m


def to8(x: torch.Tensor) -> torch.Tensor:
    return x.clamp(0, 1).mul(255).round().to(torch.uint8)


@torch.no_grad()
def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--encode", default="cuda")
    ap.add_argument("--decode", default="cpu")
    ap.add_argument("--models", nargs="+", default=["factorized", "hyperprior", "msp", "adaptive"])
    ap.add_argument("--ckpt", nargs="*", default=[], help="name=path")
    ap.add_argument("--max-images", type=int, default=24)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    ckpts = dict(kv.split("=", 1) for kv in a.ckpt)
    files = list_eval_images(resolve_data_root() / "kodak", a.max_images)
    report = {}
    for name in a.models:
        model = build(name, ckpts)
        mism, pix, maxdiff, worst, t_enc, t_dec_same, t_dec_other = 0, 0, 0, float("inf"), 0.0, 0.0, 0.0
        for f in files:
            x = load_image_tensor(f)[None]
            h, w = x.shape[-2:]
            pad, unpad = compute_padding(h, w, min_div=model.pad_multiple)
            xp = F.pad(x, pad, mode="constant", value=0)
            model.to(a.encode)
            t0 = time.perf_counter()
            enc = model.compress(xp.to(a.encode))
            t_enc += time.perf_counter() - t0
            t0 = time.perf_counter()
            dec_same = model.decompress(enc["strings"], enc["shape"])
            same = to8(F.pad(dec_same["x_hat"], unpad)).cpu()
            t_dec_same += time.perf_counter() - t0
            model.to(a.decode)
            t0 = time.perf_counter()
            dec_other = model.decompress(enc["strings"], enc["shape"])
            other = to8(F.pad(dec_other["x_hat"], unpad)).cpu()
            t_dec_other += time.perf_counter() - t0
            if not torch.equal(same, other):
                pix += 1
                maxdiff = max(maxdiff, int((same.int() - other.int()).abs().max()))
            lat_enc, lat_dec = enc.get("latents") or {}, dec_other.get("latents") or {}
            if not lat_enc or any(not torch.equal(lat_enc[k].cpu(), lat_dec[k].cpu()) for k in lat_enc):
                mism += 1
                mse = (other.float() - to8(x).float()).pow(2).mean().item()
                worst = min(worst, 10 * torch.log10(torch.tensor(255.0**2 / max(mse, 1e-9))).item())
        n = len(files)
        report[name] = {"images": n, "latent_mismatches": mism, "worst_psnr_of_mismatch": None if mism == 0 else worst,
                        "pixel_mismatches": pix, "max_pixel_diff": maxdiff,
                        "encode_s": t_enc / n, f"decode_{a.encode}_s": t_dec_same / n,
                        f"decode_{a.decode}_s": t_dec_other / n, "weights": ckpts.get(name, "random (seed 0)")}
        print(f"{name}: latents differ on {mism}/{n} images ({a.decode} vs {a.encode} decode); 8-bit reconstructions "
              f"differ on {pix}/{n} (max |diff| {maxdiff}); encode "
              f"{t_enc / n:.3f} s, decode {a.encode} {t_dec_same / n:.3f} s, {a.decode} {t_dec_other / n:.3f} s",
              flush=True)
    if a.out:
        open(a.out, "w").write(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
