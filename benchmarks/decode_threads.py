"""Which models decode bit-exactly when encoder and decoder run torch with different thread counts (issue 38).

Per model and image: encode in a fresh process with E torch threads, decode those strings in another fresh process
with D threads (each process rebuilds its tables with update(force=True), as a real decoder does), for E, D in
{1, 2}. Counted: images whose decoded latents differ from the encoder's (a decoding failure: the decoder picked other
probability tables or means), whether the strings of 1 and 2 encoder threads are equal, and images whose 8-bit
reconstruction from the same strings differs between 1 and 2 decoder threads (g_s float differences).

    python benchmarks/decode_threads.py --out benchmarks/results/decode_threads_cpu

Tiny models (N, M 16-24) with seeded random weights; g_a's last layer is scaled by --gain so the latent spans many
symbols and scales (random weights code nearly all zeros otherwise). Images: centre crops of the first Kodak images.
Writes <out>.json (rows, setup) and <out>.md (the table).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

MODELS = {  # row label -> model config
    "factorized": {"name": "factorized", "N": 16, "M": 24},
    "hyperprior": {"name": "hyperprior", "N": 16, "M": 24},
    "mbt2018-mean": {"name": "mbt2018-mean", "N": 16, "M": 24},
    "mbt2018-mean (deterministic_coding=false)": {"name": "mbt2018-mean", "N": 16, "M": 24,
                                                  "deterministic_coding": False},
    "mbt2018": {"name": "mbt2018", "N": 16, "M": 24},
    "mbt2018 (deterministic_coding=true)": {"name": "mbt2018", "N": 16, "M": 24, "deterministic_coding": True},
    "cheng2020-anchor": {"name": "cheng2020-anchor", "N": 16, "M": 16},
    "cheng2020-anchor (deterministic_coding=true)": {"name": "cheng2020-anchor", "N": 16, "M": 16,
                                                     "deterministic_coding": True},
}
THREADS = (1, 2)
DC = {True: "true", False: "false", None: "–"}


def load(cfg_file: Path):
    import torch

    from compresslab import models

    spec = torch.load(cfg_file, weights_only=True)
    model = models.build(json.loads(spec["cfg"]))
    model.load_state_dict(spec["state"])
    model.eval()
    model.update(force=True)  # this process's tables, from the weights only
    return model, spec


def child(role: str, threads: int, work: Path, enc: int) -> None:
    """One process: encode every model's images with ``threads`` threads, or decode what ``enc`` threads encoded."""
    import torch
    import torch.nn.functional as F
    from compressai.ops import compute_padding

    from compresslab.models.base import pad_multiple_of

    torch.set_num_threads(threads)
    for model_file in sorted(work.glob("model-*.pt")):
        model, _ = load(model_file)
        out = []
        with torch.no_grad():
            if role == "encode":
                for x in torch.load(work / "images.pt", weights_only=True):
                    pad, _ = compute_padding(*x.shape[-2:], min_div=pad_multiple_of(model))
                    e = model.compress(F.pad(x, pad))
                    out.append({"strings": e["strings"], "shape": list(e["shape"]), "latents": e["latents"]})
                dst = work / f"{model_file.stem}-enc{threads}.out"
            else:
                for e in torch.load(work / f"{model_file.stem}-enc{enc}.out", weights_only=False):  # our own file
                    d = model.decompress(e["strings"], torch.Size(e["shape"]))
                    out.append({"latents": d["latents"],
                                "x8": d["x_hat"].clamp(0, 1).mul(255).round().to(torch.uint8)})
                dst = work / f"{model_file.stem}-enc{enc}-dec{threads}.out"
        torch.save(out, dst)


def run_child(role: str, threads: int, work: Path, enc: int = 0) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    subprocess.run([sys.executable, __file__, "--child", role, str(threads), str(work), str(enc)], check=True,
                   env=env)


def setup_model(label: str, cfg: dict, gain: float, work: Path) -> Path:
    import torch

    from compresslab import models

    torch.manual_seed(0)
    model = models.build(cfg)
    last = [m for m in model.g_a.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    with torch.no_grad():
        last.weight.mul_(gain)
        if last.bias is not None:
            last.bias.mul_(gain)
    f = work / f"model-{len(list(work.glob('model-*.pt'))):02d}.pt"
    torch.save({"cfg": json.dumps(cfg), "state": model.state_dict(),  # None: the model has no such switch
                "deterministic_coding": getattr(model, "deterministic_coding", None)}, f)
    return f


def compare(label: str, cfg: dict, model_file: Path, n: int, work: Path) -> dict:
    import torch

    E = {e: torch.load(work / f"{model_file.stem}-enc{e}.out", weights_only=False) for e in THREADS}
    D = {(e, d): torch.load(work / f"{model_file.stem}-enc{e}-dec{d}.out", weights_only=False)
         for e in THREADS for d in THREADS}

    def latents_differ(e: int, d: int) -> int:
        return sum(any(not torch.equal(a["latents"][k], b["latents"][k]) for k in a["latents"])
                   for a, b in zip(E[e], D[e, d]))

    row = {"model": label, "name": cfg["name"], "N": cfg["N"], "M": cfg["M"],
           "deterministic_coding": torch.load(model_file, weights_only=True)["deterministic_coding"], "images": n,
           "strings_equal_enc_1_vs_2": all(a["strings"] == b["strings"] for a, b in zip(E[1], E[2])),
           "bytes": sum(len(s) for img in E[1] for group in img["strings"] for s in group)}
    for e in THREADS:
        for d in THREADS:
            row[f"latent_mismatch_enc{e}_dec{d}"] = latents_differ(e, d)
    row["latent_mismatch_cross"] = row["latent_mismatch_enc1_dec2"] + row["latent_mismatch_enc2_dec1"]
    row["x8_differs_dec_1_vs_2"] = sum(not torch.equal(a["x8"], b["x8"]) for a, b in zip(D[1, 1], D[1, 2]))
    print(f"{label}: {row}", flush=True)
    return row


def table(rows: list[dict]) -> str:
    head = ("| model | N, M | deterministic_coding | bytes (all images) | strings equal, encoder 1 vs 2 threads | latents differ, encode 1 → "
            "decode 2 threads | encode 2 → decode 1 | 8-bit reconstruction differs, decoder 1 vs 2 threads |\n"
            "|---|---|---|---|---|---|---|---|\n")
    return head + "".join(
        f"| {r['model']} | {r['N']}, {r['M']} | {DC[r['deterministic_coding']]} | {r['bytes']} | "
        f"{'yes' if r['strings_equal_enc_1_vs_2'] else 'no'} | "
        f"{r['latent_mismatch_enc1_dec2']} of {r['images']} | {r['latent_mismatch_enc2_dec1']} of {r['images']} | "
        f"{r['x8_differs_dec_1_vs_2']} of {r['images']} |\n" for r in rows)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="benchmarks/results/decode_threads_cpu")
    ap.add_argument("--images", type=int, default=2)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--gain", type=float, default=8.0)
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    a = ap.parse_args()

    import torch

    from compresslab.data.images import load_image_tensor
    from compresslab.data.root import resolve_data_root
    from compresslab.evaluation.evaluator import center_crop, list_eval_images

    files = list_eval_images(resolve_data_root(None) / "kodak", a.images)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        images = work / "images.pt"
        torch.save([center_crop(load_image_tensor(f), a.size).unsqueeze(0) for f in files], images)
        model_files = {m: setup_model(m, MODELS[m], a.gain, work) for m in a.models}
        for e in THREADS:  # encoder and decoder in separate fresh processes, every model in each
            run_child("encode", e, work)
        for e in THREADS:
            for d in THREADS:
                run_child("decode", d, work, e)
        rows = [compare(m, MODELS[m], model_files[m], len(files), work) for m in a.models]
    setup = {"images": [f.name for f in files], "crop": a.size, "gain": a.gain, "threads": list(THREADS),
             "torch": torch.__version__, "weights": "seeded random (torch.manual_seed(0)), g_a's last layer x gain",
             "command": "python benchmarks/decode_threads.py " + " ".join(sys.argv[1:])}
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"rows": rows, "setup": setup}, indent=2) + "\n")
    out.with_suffix(".md").write_text(
        f"# Decoding across torch thread counts (CPU)\n\n`{setup['command']}`: {len(files)} Kodak images, centre "
        f"crops {a.size}x{a.size}, {setup['weights']} ({a.gain:g}); torch {torch.__version__}. Encoder and decoder "
        f"each in a fresh process.\n\n" + table(rows))
    print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.md')}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2], int(sys.argv[3]), Path(sys.argv[4]), int(sys.argv[5]))
    else:
        main()
