"""Variable-rate models (models/compressai_vbr.py): a tiny mbt2018-mean-vbr trained through train.py with a rate
point drawn per batch evaluates into one rd.json holding a point per lambda; each point's strings are CompressAI's
own MeanScaleHyperpriorVbr's (stage 2, quality index s=k) on the same weights, a .clab file records its rate point
and decodes in another process to CompressAI's pixels; `compresslab rd` and `bd-rate` take the run as one curve."""

from __future__ import annotations

import json
import math
import re
import sys
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from compressai.ops import compute_padding
from PIL import Image

from conftest import run_py

warnings.filterwarnings("ignore", message=".*torch.jit.script.*")
from compressai.models.vbr import MeanScaleHyperpriorVbr  # noqa: E402

from compresslab import models  # noqa: E402
from compresslab.errors import ConfigError  # noqa: E402

LAMBDAS = [0.0018, 0.0035, 0.0067, 0.025]
TRAIN = ["train.py", "model=mbt2018-mean-vbr", "model.N=16", "model.M=16",
         f"model.lambdas=[{','.join(map(str, LAMBDAS))}]", "debug=smoke", "logger=csv", "trainer.max_steps=40",
         "trainer.limit_val_batches=0", "callbacks.rd_eval.max_images=2", "callbacks.rd_eval.crop=128",
         "data.max_train_images=8", "optim.lr=1e-3"]

@pytest.fixture(scope="module")
def vbr_run(tmp_path_factory, data_root):
    out = tmp_path_factory.mktemp("vbr")
    r = run_py([*TRAIN, f"paths.output_dir={out}"], timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    run_dir = next(out.glob("runs/*/*/rd.json")).parent
    return run_dir, json.loads((run_dir / "rd.json").read_text())


def _reference(ckpt: Path):
    """CompressAI's own class with our weights: its Gain resized to one entry per lambda, then its state dict."""
    from compresslab.models.from_checkpoint import build_model_from_checkpoint

    model, _ = build_model_from_checkpoint(str(ckpt))
    ref = MeanScaleHyperpriorVbr(N=16, M=16)
    ref.Gain = torch.nn.Parameter(torch.zeros(len(LAMBDAS)))
    ref.levels = len(LAMBDAS)
    ref.load_state_dict(model.state_dict())
    ref.eval().update(force=True)
    return ref


@pytest.mark.slow
def test_one_checkpoint_evaluates_into_one_point_per_lambda(vbr_run):
    run_dir, doc = vbr_run
    assert doc["meta"]["lambdas"] == LAMBDAS and doc["meta"]["lambda"] == 0.0067  # the run's own point: its lambda
    bpp, psnr = doc["results"]["bpp"], doc["results"]["psnr-rgb"]
    assert len(bpp) == len(psnr) == len(LAMBDAS)
    assert all(a < b for a, b in zip(bpp, bpp[1:])), bpp  # rate grows with lambda after 40 steps
    assert all(a < b for a, b in zip(psnr, psnr[1:])), psnr
    rows = doc["per_image"]
    assert sorted((r["rate_point"], r["lambda"]) for r in rows) == sorted(
        (k, lam) for k, lam in enumerate(LAMBDAS) for _ in range(2))
    for k in range(len(LAMBDAS)):  # each point is the mean of its own rows
        mine = [r["bpp"] for r in rows if r["rate_point"] == k]
        assert math.isclose(bpp[k], sum(mine) / len(mine), rel_tol=1e-12)


@pytest.mark.slow
def test_each_rate_point_is_compressais_strings_and_decodes_in_another_process(vbr_run, data_root, tmp_path):
    from compresslab.models.tiling import exact_convolutions, latent_only

    run_dir, _ = vbr_run
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    ref = _reference(ckpt)
    img = Image.open(data_root / "kodak" / "kodim23.png").convert("RGB").crop((0, 0, 128, 96))
    img.save(tmp_path / "crop.png")
    x = torch.from_numpy(__import__("numpy").asarray(img)).permute(2, 0, 1).float().div(255).unsqueeze(0)
    pad, unpad = compute_padding(96, 128, min_div=64)
    sizes = []
    for k in range(len(LAMBDAS)):
        f = tmp_path / f"k{k}.clab"
        r = run_py(["-m", "compresslab", "compress", str(ckpt), str(tmp_path / "crop.png"), "-o", str(f),
                    "--rate-point", str(k)])
        assert r.returncode == 0 and f"rate point {k}" in r.stdout, r.stderr[-2000:]
        from compresslab.bitstream.container import Container

        c = Container.from_bytes(f.read_bytes())
        assert c.rate_point == k
        with torch.no_grad():
            enc = ref.compress(F.pad(x, pad), stage=2, s=k)
            assert c.strings == [[bytes(s) for s in g] for g in enc["strings"]]  # CompressAI's bytes
            with latent_only(ref) as y_hat:  # CompressAI's decoder up to g_s; g_s as the file decoder runs it
                ref.decompress(enc["strings"], enc["shape"], stage=2, s=k)
            with exact_convolutions():
                want = ref.g_s(y_hat[0]).clamp(0, 1)
        want = (F.pad(want, unpad)[0].permute(1, 2, 0) * 255).round().byte().numpy()
        png = tmp_path / f"k{k}.png"
        r = run_py(["-m", "compresslab", "decompress", str(f), "--ckpt", str(ckpt), "-o", str(png)])  # no rate flag
        assert r.returncode == 0, r.stderr[-2000:]
        assert (__import__("numpy").asarray(Image.open(png)) == want).all()
        sizes.append(sum(len(s) for g in c.strings for s in g))
    assert sizes == sorted(sizes) and len(set(sizes)) == len(sizes), sizes
    # a header edited to another rate point is decoded at that point or refused, never at a silent default
    r = run_py(["-m", "compresslab", "compress", str(ckpt), str(tmp_path / "crop.png"), "-o",
                str(tmp_path / "bad.clab"), "--rate-point", "4"])
    assert r.returncode != 0 and "has rate points 0..3" in r.stderr.strip().splitlines()[-1], r.stderr[-2000:]


@pytest.mark.slow
def test_compresslab_rd_and_bd_rate_take_one_run_as_a_curve(vbr_run, tmp_path):
    run_dir, doc = vbr_run
    r = run_py(["-m", "compresslab", "rd", str(run_dir), "--out", str(tmp_path / "rd")])
    assert r.returncode == 0, r.stderr[-2000:]
    summary = json.loads((tmp_path / "rd" / "summary.json").read_text())
    (label, pts), = summary["curves"].items()
    assert label == "mbt2018-mean-vbr" and len(pts) == len(LAMBDAS)
    assert sorted(p["lmbda"] for p in pts) == LAMBDAS
    # one file, one curve of 4 points: its BD-rate against itself is 0 (a one-point file is refused there)
    r = run_py(["-m", "compresslab", "bd-rate", str(run_dir / "rd.json"), str(run_dir / "rd.json")])
    assert r.returncode == 0 and re.search(r"[-+]?0\.0+ ?%", r.stdout), r.stdout + r.stderr[-2000:]


def test_bad_lambdas_and_rate_points_are_one_line():
    arch = "mbt2018-mean-vbr"
    with pytest.raises(ConfigError, match=r"model.lambdas=\[0.01, 0.005\] must hold at least two positive lambdas "
                                          r"in increasing order"):
        models.get_model_class(arch).check_config({"name": arch, "lambdas": [0.01, 0.005]}, 8)
    with pytest.raises(ConfigError, match="unknown key.*model.deterministic_coding"):
        models.get_model_class(arch).check_config({"name": arch, "deterministic_coding": True}, 8)
    from compresslab.training.module import rate_point_of

    assert rate_point_of(LAMBDAS, 0.025, arch) == 3
    with pytest.raises(ConfigError,
                       match=r"lambda=0.013 is not one of model.lambdas=\[0.0018, 0.0035, 0.0067, 0.025\]"):
        rate_point_of(LAMBDAS, 0.013, arch)
    m = models.build({"name": arch, "N": 8, "M": 8, "lambdas": LAMBDAS})
    assert m.Gain.shape == (4,) and torch.allclose(m.Gain, torch.tensor([math.sqrt(v / 0.025) for v in LAMBDAS]))
    with pytest.raises(ValueError, match="rate point 4 does not exist: this model has 4"):
        m.set_rate_point(4)
    with pytest.raises(ConfigError, match="'mbt2018-vbr' is variable-rate with a serial context model"):
        models.get_model_class("mbt2018-vbr").check_config({"name": "mbt2018-vbr"}, 8)


@pytest.mark.parametrize("arch", ["bmshj2018-hyperprior-vbr", "mbt2018-mean-vbr"])
def test_strings_and_pixels_are_compressais_at_every_rate_point(arch):
    """Both adapted architectures, untrained weights (y scaled up so every rate point codes non-zero symbols):
    our compress/decompress at rate point k against CompressAI's own class at s=k, bytes and pixels."""
    import compressai.registry

    m = models.build({"name": arch, "N": 8, "M": 8, "lambdas": LAMBDAS}).eval()
    with torch.no_grad():
        m.g_a[-1].weight.mul_(30)
    ref = compressai.registry.MODELS[arch](N=8, M=8)
    ref.Gain = torch.nn.Parameter(torch.zeros(len(LAMBDAS)))
    ref.levels = len(LAMBDAS)
    ref.load_state_dict(m.state_dict())
    m.update(force=True), ref.eval().update(force=True)
    x = torch.rand(1, 3, 64, 128, generator=torch.Generator().manual_seed(0))
    sizes = []
    with torch.no_grad():
        for k in range(len(LAMBDAS)):
            m.set_rate_point(k)
            ours, theirs = m.compress(x), ref.compress(x, stage=2, s=k)
            assert ours["strings"] == theirs["strings"]
            dec = m.decompress(ours["strings"], ours["shape"])
            assert torch.equal(dec["x_hat"], ref.decompress(theirs["strings"], theirs["shape"], stage=2, s=k)["x_hat"])
            assert torch.equal(dec["latents"]["q"], ours["latents"]["q"])
            sizes.append(len(ours["strings"][0][0]))
    assert sizes == sorted(sizes) and len(set(sizes)) == len(sizes), sizes


def test_a_training_batch_uses_the_drawn_rate_points_lambda():
    """training_losses: the loss is R + lambda_k * D at the rate point k the batch drew (CompressAI's stage-2
    forward at s=k), never the run's lambda."""
    from compresslab.evaluation.losses import RateDistortionLoss

    m = models.build({"name": "mbt2018-mean-vbr", "N": 8, "M": 8, "lambdas": LAMBDAS}).train()
    x = torch.rand(2, 3, 64, 64)
    seen = set()
    for seed in range(12):
        torch.manual_seed(seed)
        k = int(torch.randint(len(LAMBDAS), ()).item())  # what the batch will draw
        torch.manual_seed(seed)
        losses, n = m.training_losses(x, RateDistortionLoss(0.0067))
        torch.manual_seed(seed)
        torch.randint(len(LAMBDAS), ())
        out = MeanScaleHyperpriorVbr.forward(m, x, stage=2, s=k)  # CompressAI's forward (its noise draws follow)
        want = RateDistortionLoss(LAMBDAS[k])(out, x)["loss"]
        assert n == 2 and torch.allclose(losses["loss"], want), (k, losses["loss"], want)
        seen.add(k)
    assert seen == set(range(len(LAMBDAS))) and m.rate_point == len(LAMBDAS) - 1  # its own rate point: unchanged


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
