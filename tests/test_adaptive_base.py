"""The adaptive stage on a hyperprior-family base's z (``model=adaptive model.base_model=<hyperprior | mbt2018-mean>``,
models/adaptive_base.py): trains on the frozen base, codes real bitstreams that decode bit-exactly in another process,
keeps y exactly as the base codes it, states z's share of the bits, and has its ideal bound and static controls."""

import json

import pytest
import torch
from PIL import Image

from compresslab import models
from compresslab.bitstream.codec import compress_file, decompress_file
from compresslab.data.images import load_image_tensor
from compresslab.errors import ConfigError
from compresslab.evaluation.evaluator import evaluate_model, list_eval_images
from compresslab.io.checkpoints import CheckpointError
from compresslab.models.from_checkpoint import build_model_from_checkpoint
from conftest import assert_decodes_identically_elsewhere, train

TINY = ["model.N=16", "model.M=16", "callbacks.rd_eval.enabled=false"]


def spread_z(ckpt, out, name, data_root):
    """An 8-step base's z collapses to one symbol (h_a's output is ~0.03), which would leave the stage nothing to
    code: h_a's last layer scaled up so z spans several symbols, and z's EB quantiles (medians, coding support) set to
    z's empirical ones on training crops, so the static density is a poor but valid fit."""
    doc = torch.load(ckpt, weights_only=True, map_location="cpu")
    sd = doc["state_dict"]
    for k in ("model.h_a.4.weight", "model.h_a.4.bias"):
        sd[k] = sd[k] * 100
    base = models.build({"name": name, "N": 16, "M": 16})
    base.load_state_dict({k[len("model."):]: v for k, v in sd.items() if k.startswith("model.")})
    with torch.no_grad():
        xs = torch.stack([load_image_tensor(f)[:, :64, :64] for f in sorted((data_root / "train").glob("*"))[:16]])
        z = base.encode_latents(xs)["z"].transpose(0, 1).reshape(16, -1)
        q = torch.quantile(z, torch.tensor([0.01, 0.5, 0.99]), dim=1).T  # (channels, 3)
    sd["model.entropy_bottleneck.quantiles"] = q[:, None, :].contiguous()
    torch.save(doc, out)
    return out


@pytest.fixture(scope="module", params=["hyperprior", "mbt2018-mean"])
def stage(request, tmp_path_factory, data_root):
    """(base name, base checkpoint, adaptive run folder, its checkpoint): both tiny, a few steps each."""
    name = request.param
    d = tmp_path_factory.mktemp(f"adaptive-{name}")
    trained = train(d / "base", [f"model={name}", *TINY])["last_ckpt"]
    base = spread_z(trained, d / "base-spread.ckpt", name, data_root)
    res = train(d / "stage", ["model=adaptive", f"model.base_model={name}", f"model.base_ckpt={base}",
                              "model.N=16", "model.M=16", "trainer.max_steps=6", "trainer.val_check_interval=3",
                              "callbacks.rd_eval.max_images=2", "callbacks.rd_eval.crop=128"])
    return name, base, d / "stage", res["last_ckpt"]


@pytest.mark.slow
def test_the_stage_trains_on_the_frozen_base_and_states_the_z_share(stage):
    name, base_ckpt, run, ckpt = stage
    model, meta = build_model_from_checkpoint(ckpt)
    base, _ = build_model_from_checkpoint(base_ckpt)
    assert meta["model"]["base_model"] == name and type(model).__name__ == "AdaptiveOnBase"
    for k, v in base.state_dict().items():  # frozen: every weight of the base unchanged by the stage
        if not k.split(".")[-1].startswith("_"):
            torch.testing.assert_close(model.base.state_dict()[k], v, rtol=0, atol=0)
    fresh = models.build({**meta["model"], "base_ckpt": None})
    assert any(not torch.equal(v, fresh.state_dict()[k]) for k, v in model.state_dict().items()
               if k.startswith("pdf.h_")), "side-info codec did not train"
    header = (run / "metrics.csv").read_text().splitlines()[0].split(",")
    assert "train/rate_loss" in header  # cached z: the rate alone
    doc = json.loads((run / "rd.json").read_text())
    assert doc["name"] == f"adaptive-{name}"  # its own curve, never the factorized stage's
    rows = doc["per_image"]
    for r in rows:  # every counted bit is y's, z's or the side information's
        assert r["y_bits"] + r["z_bits"] + r["side_bits"] == 8 * r["bytes"]
        assert r["z_share"] == pytest.approx(r["z_bits"] / (8 * r["bytes"]))
    total = sum(8 * r["bytes"] for r in rows)
    assert doc["meta"]["z_share"] == pytest.approx(sum(r["z_bits"] for r in rows) / total)
    assert doc["meta"]["side_share"] == pytest.approx(sum(r["side_bits"] for r in rows) / total)
    assert 0 < doc["meta"]["z_share"] < 1


@pytest.mark.slow
def test_y_is_coded_as_the_base_codes_it_and_z_with_the_stage(stage, kodak_crops):
    name, base_ckpt, _, ckpt = stage
    model, _ = build_model_from_checkpoint(ckpt)
    base, _ = build_model_from_checkpoint(base_ckpt)
    x = load_image_tensor(sorted(list_eval_images(kodak_crops))[0])[None, :, :192, :256]
    enc, own = model.compress(x), base.compress(x)
    assert enc["strings"][0] == own["strings"][0]  # y: the base's own strings (same z_hat, same coder)
    assert enc["strings"][1] != own["strings"][1]  # z: under the per-image tables of p_hat
    assert torch.equal(enc["latents"]["z"], own["latents"]["z"])
    res = evaluate_model(model, list_eval_images(kodak_crops))  # raises if a decoded y, z or q differs
    base_res = evaluate_model(base, list_eval_images(kodak_crops))
    assert res["mean"]["psnr-rgb"] == pytest.approx(base_res["mean"]["psnr-rgb"], abs=1e-9)
    assert all(r["side_bits"] > 0 for r in res["per_image"])

    ideal, _ = build_model_from_checkpoint(ckpt, {**model.hparams_dict, "name": "adaptive", "ideal": True})
    ideal_res = evaluate_model(ideal, list_eval_images(kodak_crops))
    for r, b in zip(ideal_res["per_image"], base_res["per_image"]):
        assert r["side_bits"] == 0 and r["y_bits"] + r["z_bits"] == 8 * r["bytes"]
        # the bound: z under its own histogram never costs more than under the static density (+ rANS flush)
        assert r["z_bits"] <= 8 * b["bytes"] - r["y_bits"] + 32


@pytest.mark.slow
def test_a_file_decodes_bit_exactly_in_another_process(stage, data_root, tmp_path):
    _, _, _, ckpt = stage
    src = tmp_path / "in.png"
    Image.open(data_root / "kodak" / "kodim19.png").convert("RGB").crop((0, 0, 192, 256)).save(src)
    compress_file(ckpt, src, tmp_path / "x.clab")
    here = decompress_file(tmp_path / "x.clab", ckpt)
    assert_decodes_identically_elsewhere(tmp_path / "x.clab", ckpt, here, tmp_path)


@pytest.mark.slow
def test_static_controls_on_z(stage, kodak_crops, data_root):
    from compresslab.models.adaptive_base_static import fit_static_on_base

    name, base_ckpt, _, _ = stage
    files = list_eval_images(kodak_crops)
    xs = [load_image_tensor(f) for f in files]
    crops = [load_image_tensor(f) for f in sorted((data_root / "train").glob("*"))[:6]]
    one = fit_static_on_base(str(base_ckpt), name, crops, N=16, M=16)
    assert one.pmfs.shape == (1, 16, 256) and (one.pmfs > 0).all()
    res = evaluate_model(one, files)  # decodes and checks the latents
    assert all(r["side_bits"] == 0 for r in res["per_image"])
    loo = fit_static_on_base(str(base_ckpt), name, xs, loo=True, N=16, M=16)
    for i in range(len(xs)):  # image i's table is the PMF of the OTHER images only
        others = fit_static_on_base(str(base_ckpt), name, xs[:i] + xs[i + 1:], N=16, M=16).pmfs[0]
        assert torch.allclose(loo.pmfs[i], others, rtol=0, atol=2 * 2 ** -24)
    res = evaluate_model(loo, files)
    assert all(r["side_bits"] == 16 for r in res["per_image"])
    with pytest.raises(KeyError, match="leave-one-out"):
        loo.compress(torch.rand(1, 3, 64, 64))


@pytest.mark.slow
def test_a_base_the_stage_cannot_use_is_one_line(tmp_path, hyperprior_ckpt):
    for base, why in (("msp", "codes no hyper-latent z"), ("nosuch", "not a registered model")):
        with pytest.raises(ConfigError, match=why) as e:
            train(tmp_path / base, ["model=adaptive", f"model.base_model={base}"])
        assert "\n" not in str(e.value) and "hyperprior, mbt2018, mbt2018-mean" in str(e.value)
    with pytest.raises(CheckpointError, match="holds a 'hyperprior' model.*model.base_model=hyperprior"):
        models.build({"name": "adaptive", "base_model": "mbt2018-mean", "N": 32, "M": 48,
                      "base_ckpt": str(hyperprior_ckpt)})


@pytest.mark.slow
def test_a_finished_run_of_the_named_base_is_the_base_it_finds(hyperprior_ckpt, tmp_path):
    from pathlib import Path

    runs = Path(hyperprior_ckpt).parents[1]  # the session's hyperprior smoke run (lambda 0.0067, N=32, M=48)
    train(tmp_path / "a", ["model=adaptive", "model.base_model=hyperprior", "callbacks.rd_eval.enabled=false",
                           "trainer.max_steps=2", "trainer.val_check_interval=2", f"paths.output_dir={runs}",
                           "lambda=0.0067"])
    base = json.loads((tmp_path / "a" / "base.json").read_text())
    assert base["base_ckpt"] == str(hyperprior_ckpt) and base["how"] == "run"
    assert base["detail"].startswith("a finished hyperprior run at lambda=0.0067")
    model, meta = build_model_from_checkpoint(tmp_path / "a" / "checkpoints" / "last.ckpt")
    assert meta["model"]["base_model"] == "hyperprior" and model.pdf.M == 32  # the stage codes z's N channels
