import pytest
import torch
from PIL import Image

from compresslab.models.from_checkpoint import build_model_from_checkpoint
from compresslab.bitstream.codec import compress_file, decompress_file
from compresslab.evaluation.evaluator import evaluate_model, list_eval_images
from compresslab.evaluation.lof import lof_encoder_factory, overfit_latents, rd_cost
from compresslab.evaluation.lof_config import LOFConfig
from conftest import assert_decodes_identically_elsewhere, require_data, train

from compressai.ops import compute_padding


@pytest.fixture(scope="module")
def lof_models(factorized_ckpt, hyperprior_ckpt, tmp_path_factory):
    d = tmp_path_factory.mktemp("adaptive_lof")
    ad = train(d, ["model=adaptive", f"model.base_ckpt={factorized_ckpt}", "callbacks.rd_eval.enabled=false",
                   "trainer.max_steps=4", "trainer.val_check_interval=2"])["last_ckpt"]
    msp = train(d / "msp", ["model=msp/fast", "model.N=32", "model.M=48", "model.filters=16", "model.resblocks=1",
                            "data.patch_size=128", "data.val_patch_size=128", "data.batch_size=2",
                            "callbacks.rd_eval.enabled=false", "trainer.max_steps=2", "trainer.val_check_interval=2",
                            "trainer.limit_val_batches=1"])["last_ckpt"]
    return {"factorized": factorized_ckpt, "hyperprior": hyperprior_ckpt, "adaptive": ad, "msp": msp}


def _image(h=128, w=192):
    img = Image.open(require_data() / "kodak" / "kodim07.png").convert("RGB").crop((100, 100, 100 + w, 100 + h))
    return torch.from_numpy(__import__("numpy").asarray(img).copy()).permute(2, 0, 1).float()[None] / 255


@pytest.mark.slow
@pytest.mark.parametrize("name", ["factorized", "hyperprior", "adaptive", "msp"])
def test_greedy_acceptance_for_every_model(lof_models, name):
    model, _ = build_model_from_checkpoint(lof_models[name])
    x = _image()
    cfg = LOFConfig(steps=40, lr=3e-2, lr_end=3e-3, patience=100)  # large steps: rounding flips happen quickly
    best, rep = overfit_latents(model, x, 0.0067, cfg)
    assert rep["lof_cost_after"] <= rep["lof_cost_before"]
    assert rep["lof_cost_after"] == min(rep["lof_curve"])
    _, unpad = compute_padding(*x.shape[-2:], min_div=model.pad_multiple)
    with torch.no_grad():  # the returned latent really has the reported cost
        cost, _ = rd_cost(model, best, x, unpad, 0.0067, "mse")
    assert float(cost) == pytest.approx(rep["lof_cost_after"], rel=1e-5)
    assert rep["lof_cost_after"] < rep["lof_cost_before"], "LOF found nothing better in 40 large steps"


@pytest.mark.slow
def test_lof_real_bitstream_never_worse(lof_models, kodak_crops):
    model, _ = build_model_from_checkpoint(lof_models["factorized"])
    files = list_eval_images(kodak_crops, 1)
    plain = evaluate_model(model, files)["mean"]
    cfg = LOFConfig(steps=30, lr=3e-2, lr_end=3e-3)
    lof = evaluate_model(model, files, encode_factory=lof_encoder_factory(model, cfg, 0.0067))["mean"]
    cost = lambda m: 0.0067 * 255**2 * 10 ** (-m["psnr-rgb"] / 10) + m["bpp"]  # noqa: E731 (MSE from PSNR)
    assert cost(lof) <= cost(plain) * 1.002  # real bits and 8-bit PSNR; slack for the coder's overhead
    assert lof["encoding_time"] > plain["encoding_time"]


@pytest.mark.slow
def test_nan_falls_back_to_the_best_latent(lof_models, monkeypatch):
    model, _ = build_model_from_checkpoint(lof_models["factorized"])
    real = type(model).latent_forward
    calls = {"n": 0}

    def sometimes_nan(self, latents):
        out = real(self, latents)
        calls["n"] += 1
        if calls["n"] == 5:
            out["x_hat"] = out["x_hat"] * float("nan")
        return out

    monkeypatch.setattr(type(model), "latent_forward", sometimes_nan)
    with pytest.warns(RuntimeWarning, match="non-finite RD cost at iteration 4"):
        best, rep = overfit_latents(model, _image(), 0.0067, LOFConfig(steps=20, lr=3e-2))
    assert rep["lof_nan_at"] == 4 and len(rep["lof_curve"]) == 4
    assert all(torch.isfinite(v).all() for v in best.values())


@pytest.mark.slow
@pytest.mark.parametrize("name", ["hyperprior", "adaptive", "msp"])
def test_lof_bitstream_decodes_exactly_in_another_process(data_root, lof_models, tmp_path, name):
    ckpt = lof_models[name]
    src = tmp_path / "in.png"
    Image.open(data_root / "kodak" / "kodim07.png").convert("RGB").crop((100, 100, 292, 228)).save(src)
    compress_file(ckpt, src, tmp_path / "plain.clab")
    info = compress_file(ckpt, src, tmp_path / "lof.clab", lof=LOFConfig(steps=40, lr=3e-2, lr_end=3e-3,
                                                                          patience=100), lmbda=0.0067)
    assert info["lof_cost_after"] < info["lof_cost_before"]  # the file holds a different, better latent
    assert (tmp_path / "lof.clab").read_bytes() != (tmp_path / "plain.clab").read_bytes()
    here = decompress_file(tmp_path / "lof.clab", ckpt)
    # the unchanged CLI decoder in a fresh process
    assert_decodes_identically_elsewhere(tmp_path / "lof.clab", ckpt, here, tmp_path)


def test_lof_config_rejects_unknown_keys():
    with pytest.raises(ValueError, match="unknown lof"):
        LOFConfig.from_mapping({"stepz": 3})
    assert LOFConfig.from_mapping({"enabled": True, "steps": 7}).steps == 7


def test_lof_defaults_have_one_definition():
    """LOFConfig holds the defaults; conf/train.yaml's lof block and the CLI's --lof-* flags must agree with it."""
    import dataclasses

    from compresslab.cli import build_parser
    from compresslab.evaluation.lof_config import LOFConfig
    from conftest import compose

    defaults = {f.name: f.default for f in dataclasses.fields(LOFConfig) if f.name != "metric"}
    conf = {k: v for k, v in compose([]).lof.items() if k != "enabled"}
    assert conf == defaults
    args = build_parser().parse_args(["evaluate", "x.ckpt"])
    assert (args.lof_steps, args.lof_patience, args.lof_lr, args.lof_lr_end) == \
        (defaults["steps"], defaults["patience"], defaults["lr"], defaults["lr_end"])
    assert build_parser().parse_args(["compress", "x.ckpt", "a.png", "-o", "a.clab"]).lof_steps == defaults["steps"]
