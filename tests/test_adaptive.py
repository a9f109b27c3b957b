import math
import json

import pytest
import torch
from PIL import Image

from compresslab import models
from compresslab.io.checkpoints import CheckpointError
from compresslab.models.from_checkpoint import build_model_from_checkpoint
from compresslab.entropy.histogram import clip_range, histogram, range_bound
from compresslab.bitstream.codec import compress_file, decompress_file
from compresslab.evaluation.evaluator import evaluate_model, list_eval_images
from conftest import assert_decodes_identically_elsewhere, train


def test_histogram_hard_forward_triangular_backward():
    torch.manual_seed(0)
    u = (torch.randn(2, 3, 8, 8) * 3).requires_grad_(True)
    p = histogram(u, 32)
    assert p.shape == (2, 3, 32)
    torch.testing.assert_close(p.sum(-1), torch.ones(2, 3))
    expected = torch.zeros(2, 3, 32)
    idx = (u.detach().round() + 16).long().clamp(0, 31).reshape(2, 3, -1)
    expected.scatter_add_(-1, idx, torch.ones_like(idx, dtype=torch.float))
    torch.testing.assert_close(p.detach(), expected / 64)  # forward = hard counts (rounding)
    w = torch.arange(32, dtype=torch.float)  # a linear functional of p: gradient of the soft (triangular) kernel
    (p * w).sum().backward()
    # sum_bins w * tri(u) for linear w is linear in u with slope 1 per sample, divided by the count
    torch.testing.assert_close(u.grad, torch.full_like(u, 1 / 64))


def test_range_bound_only_inward_gradients_outside():
    lo, hi = clip_range(256)
    assert (lo, hi) == pytest.approx((-0.5 - 0.75 * 127.5, -0.5 + 0.75 * 127.5))
    x = torch.tensor([-200.0, 0.0, 200.0, 200.0, -200.0], requires_grad=True)
    y = range_bound(x, lo, hi)
    assert y.tolist()[0] == pytest.approx(lo) and y.tolist()[2] == pytest.approx(hi)
    y.backward(torch.tensor([1.0, 1.0, 1.0, -1.0, -1.0]))
    # below: grad +1 would push further down (dropped), -1 pushes up (kept); above: the opposite
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 0.0, -1.0]


@pytest.fixture(scope="module")
def adaptive_ckpt(tmp_path_factory, factorized_ckpt):
    d = tmp_path_factory.mktemp("adaptive")
    res = train(d, ["model=adaptive", f"model.base_ckpt={factorized_ckpt}", "callbacks.rd_eval.enabled=false",
                    "trainer.max_steps=6", "trainer.val_check_interval=3"])
    return res["last_ckpt"]


@pytest.mark.slow
def test_adaptive_requires_a_factorized_base(tmp_path, hyperprior_ckpt):
    with pytest.raises(ValueError, match="needs a trained factorized base and none was found.*model.base_ckpt"):
        train(tmp_path / "a", ["model=adaptive", "base.search_runs=false", "base.zoo=false", "base.train=false"])
    with pytest.raises(CheckpointError, match="needs a trained factorized checkpoint"):
        train(tmp_path / "b", ["model=adaptive", f"model.base_ckpt={hyperprior_ckpt}"])


@pytest.mark.slow
def test_adaptive_trains_only_the_side_info_codec(adaptive_ckpt, factorized_ckpt):
    from pathlib import Path

    header = (Path(adaptive_ckpt).parents[1] / "metrics.csv").read_text().splitlines()[0].split(",")
    assert "train/rate_loss" in header and "train/loss" not in header  # a rate-only objective, named so
    assert "val/loss" in header  # validation runs the full model: an RD loss
    model, meta = build_model_from_checkpoint(adaptive_ckpt)
    base, _ = build_model_from_checkpoint(factorized_ckpt)
    assert meta["model"]["N"] == 32 and meta["model"]["M"] == 48  # read from the base checkpoint
    for k, v in base.state_dict().items():  # frozen base: g_a, g_s and the base EB unchanged by stage 2
        if not k.startswith("entropy_bottleneck._"):
            torch.testing.assert_close(model.state_dict()[k], v, rtol=0, atol=0)
    fresh = models.build({**meta["model"], "base_ckpt": None})
    changed = [k for k, v in model.state_dict().items() if k.startswith("pdf.h_") and not torch.equal(v, fresh.state_dict()[k])]
    assert changed, "side-info codec did not train"


@pytest.mark.slow
def test_the_base_reaches_the_constructor_as_weights(factorized_ckpt, hyperprior_ckpt):
    """registry.build opens model.base_ckpt; the adaptive class itself takes tensors and opens no file."""
    base, _ = build_model_from_checkpoint(factorized_ckpt)
    m = models.build({"name": "adaptive", "N": 32, "M": 48, "base_ckpt": str(factorized_ckpt)})
    for k in ("g_a.0.weight", "g_s.6.weight", "entropy_bottleneck.matrices.0", "entropy_bottleneck.quantiles"):
        assert torch.equal(m.state_dict()[k], base.state_dict()[k])
    assert torch.equal(m.entropy_bottleneck.quantized_cdf, base.entropy_bottleneck.quantized_cdf)  # tables fixed
    with pytest.raises(TypeError, match="base_ckpt"):
        models.get_model_class("adaptive")(N=32, M=48, base_ckpt=str(factorized_ckpt))
    with pytest.raises(CheckpointError, match="holds a 'hyperprior' model.*needs a trained factorized"):
        models.build({"name": "adaptive", "N": 32, "M": 48, "base_ckpt": str(hyperprior_ckpt)})


@pytest.mark.slow
def test_rate_is_the_cross_entropy_of_the_histogram(factorized_ckpt):
    torch.manual_seed(0)
    m = models.build({"name": "adaptive", "N": 32, "M": 48, "base_ckpt": str(factorized_ckpt), "ideal": True})
    y = torch.randn(1, 48, 8, 8) * 2
    out = m.rates_from_latent(y, (128, 128))
    p = out["p"]
    entropy_bits = -(p * torch.log2(p.clamp_min(1e-30))).sum()  # ideal: CE(p, p) = H(p)
    rate_bits = -torch.log2(out["likelihoods"]["y"]).sum()
    torch.testing.assert_close(rate_bits, entropy_bits * 64, rtol=1e-5, atol=1e-3)
    assert "q" not in out["likelihoods"]


@pytest.mark.slow
def test_adaptive_codes_exactly_and_real_bits_match_the_estimate(adaptive_ckpt, factorized_ckpt, kodak_crops):
    model, _ = build_model_from_checkpoint(adaptive_ckpt)
    res = evaluate_model(model, list_eval_images(kodak_crops))  # raises if decoded y or q differ from the encoder's
    rows = res["per_image"]
    assert all(r["side_bits"] > 0 for r in rows)
    assert 0.9 < res["mean"]["bpp_ratio"] < 1.15
    base, _ = build_model_from_checkpoint(factorized_ckpt)
    base_res = evaluate_model(base, list_eval_images(kodak_crops))
    # same frozen transforms and quantisation grid: identical reconstructions
    assert res["mean"]["psnr-rgb"] == pytest.approx(base_res["mean"]["psnr-rgb"], abs=1e-9)

    ideal, _ = build_model_from_checkpoint(adaptive_ckpt, {"name": "adaptive", "N": 32, "M": 48, "ideal": True})
    ideal_res = evaluate_model(ideal, list_eval_images(kodak_crops))
    assert all(r["side_bits"] == 0 for r in ideal_res["per_image"])
    # coding y with its own histogram is the bound: never worse than the static base density (up to escapes)
    assert ideal_res["mean"]["bpp"] <= base_res["mean"]["bpp"] * 1.01
    # the estimate ignores escape-coded symbols outside the base EB's support, which is narrow for an 8-step base
    assert 0.97 < ideal_res["mean"]["bpp_ratio"] < 1.15


@pytest.mark.slow
def test_adaptive_decodes_bit_exactly_in_another_process(data_root, tmp_path, adaptive_ckpt):
    src = tmp_path / "in.png"
    Image.open(data_root / "kodak" / "kodim19.png").convert("RGB").crop((0, 0, 192, 256)).save(src)
    compress_file(adaptive_ckpt, src, tmp_path / "x.clab")
    here = decompress_file(tmp_path / "x.clab", adaptive_ckpt)
    assert_decodes_identically_elsewhere(tmp_path / "x.clab", adaptive_ckpt, here, tmp_path)


@pytest.mark.slow
def test_lambda_q_defaults_to_the_pixel_ratio(factorized_ckpt):
    m = models.build({"name": "adaptive", "N": 32, "M": 48, "base_ckpt": str(factorized_ckpt)})
    assert m.lambda_q(256, 256) == pytest.approx(1 / 6)
    assert m.lambda_q(512, 768) == 1.0
    assert math.isclose(models.build({"name": "adaptive", "N": 32, "M": 48, "lambda_q": 0.5}).lambda_q(64, 64), 0.5)


@pytest.mark.slow
def test_static_refit_control_codes_real_bitstreams_with_one_static_pmf(data_root, factorized_ckpt, kodak_crops):
    from compresslab.data.images import find_images, load_image_tensor
    from compresslab.models.adaptive import fit_static_refit

    crops = [load_image_tensor(f) for f in find_images(data_root / "train")[:8]]
    model = fit_static_refit(str(factorized_ckpt), crops, N=32, M=48)
    pmf = model.static_pmf
    assert pmf.shape == (48, 256) and torch.allclose(pmf.sum(-1), torch.ones(48, dtype=pmf.dtype), atol=1e-5)
    assert (pmf > 0).all()  # the floor keeps every bin codable
    res = evaluate_model(model, list_eval_images(kodak_crops))  # raises if the decoded latents differ
    rows = res["per_image"]
    assert all(r["side_bits"] == 0 for r in rows)
    # the estimate is the cross-entropy under the same static PMF (tiny crops: the rANS flush bytes add a few %)
    assert 0.98 < res["mean"]["bpp_ratio"] < 1.15
    # one PMF for every image: coding image A with B's tables is what the decoder of A does
    enc = model.compress(torch.zeros(1, 3, 64, 64))
    assert enc["strings"][1] == [b""]


@pytest.mark.slow
def test_an_ideal_run_is_named_ideal_and_forms_its_own_curve(tmp_path, factorized_ckpt):
    from compresslab.rd.curves import load_points

    train(tmp_path, ["model=adaptive", f"model.base_ckpt={factorized_ckpt}", "model.ideal=true",
                     "callbacks.rd_eval.max_images=1", "trainer.max_steps=0"])  # the bound has nothing to train
    doc = json.loads((tmp_path / "rd.json").read_text())
    assert doc["name"] == "adaptive-ideal" and doc["meta"]["label"] == "adaptive-ideal"
    assert list(load_points([str(tmp_path)])) == ["adaptive-ideal"]
    from compresslab.training.run import ConfigError
    with pytest.raises(ConfigError, match="nothing to train"):
        train(tmp_path / "b", ["model=adaptive", f"model.base_ckpt={factorized_ckpt}", "model.ideal=true"])


@pytest.mark.slow
def test_a_lambda_other_than_the_bases_is_reported(factorized_ckpt, caplog):
    from compresslab.models.base_weights import base_lambda
    from compresslab.training.run import prepare_model_config

    trained = base_lambda(str(factorized_ckpt))
    assert trained is not None
    with caplog.at_level("WARNING", logger="compresslab.training.run"):
        cfg = prepare_model_config({"name": "adaptive", "base_ckpt": str(factorized_ckpt)}, lmbda=trained)
    assert cfg["N"] == 32 and not caplog.records
    with caplog.at_level("WARNING", logger="compresslab.training.run"):
        prepare_model_config({"name": "adaptive", "base_ckpt": str(factorized_ckpt)}, lmbda=trained * 2)
    assert any(f"differs from the base checkpoint's lambda {trained:g}" in r.getMessage() for r in caplog.records)


def test_an_old_static_re_fit_file_reads_back_named_for_what_it_was_fitted_on():
    from compresslab.evaluation.results import RDMeta

    assert RDMeta.from_json({"label": "static re-fit", "train_crops": 200}).label == "static (200 train crops)"
    assert RDMeta.from_json({"label": "static re-fit", "train_crops": 8}).label == "static (8 train crops)"
    assert RDMeta.from_json({"label": "adaptive-ideal"}).label == "adaptive-ideal"


@pytest.fixture(scope="module")
def loo_images(data_root, tmp_path_factory):
    """Four 64x128 Kodak crops from different images (a multiple of 64: the coder sees them unpadded)."""
    d = tmp_path_factory.mktemp("loo_kodak")
    for name in ("kodim01.png", "kodim07.png", "kodim15.png", "kodim23.png"):
        Image.open(data_root / "kodak" / name).convert("RGB").crop((256, 192, 384, 256)).save(d / name)
    return d


@pytest.mark.slow
def test_leave_one_out_control_never_codes_an_image_with_a_pmf_that_saw_it(factorized_ckpt, loo_images):
    from compresslab.data.images import load_image_tensor
    from compresslab.models.adaptive import fit_static_loo, fit_static_refit

    files = list_eval_images(loo_images)
    xs = [load_image_tensor(f) for f in files]
    model = fit_static_loo(str(factorized_ckpt), xs, N=32, M=48)
    pooled_all = fit_static_refit(str(factorized_ckpt), xs, N=32, M=48).static_pmf
    grid = 2 ** -24
    for i in range(len(xs)):
        others = fit_static_refit(str(factorized_ckpt), xs[:i] + xs[i + 1:], N=32, M=48).static_pmf
        # image i's table is exactly the PMF of the OTHER images (a fit that counted image i would be pooled_all-like)
        assert torch.allclose(model.loo_pmfs[i], others, rtol=0, atol=2 * grid)
        assert (model.loo_pmfs[i] - pooled_all).abs().max() > 1000 * grid
        # and the coder picks that table for image i, writes its index, and counts those 16 bits
        enc = model.compress(xs[i][None])
        assert enc["strings"][1] == [i.to_bytes(2, "little")] and enc["report"]["side_bits"] == 16
    res = evaluate_model(model, files)  # check=True: raises if a decoded latent differs from the encoder's
    assert all(r["side_bits"] == 16 for r in res["per_image"])
    # the estimate is the cross-entropy under the same tables; real bits are never below it (on 64x128 crops the
    # index, the rANS flush and the escape-coded symbols a 3-image fit never saw make them far above it)
    assert res["mean"]["bpp_ratio"] > 0.98
    # decoding is bit-exact: the decoder rebuilds image 2's table from its index alone
    enc = model.compress(xs[2][None])
    dec = model.decompress(enc["strings"], enc["shape"])
    assert torch.equal(dec["latents"]["y"], enc["latents"]["y"])
    # with another image's table the same bits decode to other symbols: the index matters
    wrong = [enc["strings"][0], [(3).to_bytes(2, "little")]]
    assert not torch.equal(model.decompress(wrong, enc["shape"])["latents"]["y"], enc["latents"]["y"])
    # an image it was not fitted on is refused, never coded with a density fitted on all of them
    with pytest.raises(KeyError, match="leave-one-out"):
        model.compress(torch.rand(1, 3, 64, 64))
    with pytest.raises(ValueError, match="at least 2"):
        fit_static_loo(str(factorized_ckpt), xs[:1], N=32, M=48)


@pytest.mark.slow
def test_static_control_driver_writes_both_controls_named_for_what_they_are(factorized_ckpt, loo_images, tmp_path,
                                                                             monkeypatch, capsys):
    from compresslab.drivers import adaptive_static_control
    from compresslab.rd.curves import summarize_runs
    from compresslab.evaluation.results import RDResult, evaluate_checkpoint

    sweep = tmp_path / "sweep"
    base = evaluate_checkpoint(str(factorized_ckpt), list_eval_images(loo_images), lmbda=0.0067, dataset="kodak")
    base.write(sweep / "0_base" / "rd.json")
    work = tmp_path / "work"
    adaptive_static_control.main(["--base-sweep", str(sweep), "--work", str(work), "--fit", "loo",
                                  "--kodak", str(loo_images)])
    rd = RDResult.read(work / "static_loo" / "lambda0.0067" / "rd.json")
    assert rd.meta.label == "static (leave-one-out)" and rd.meta.extra["fit_images_per_table"] == 3
    assert rd.meta.images == 4 and rd.meta.checkpoint == str(factorized_ckpt)
    assert [r["name"] for r in rd.per_image] == [r["name"] for r in base.per_image]  # the base's own images
    assert "static (leave-one-out)" in capsys.readouterr().out
