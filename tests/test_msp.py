import pytest
import torch
from PIL import Image

from compresslab import models
from compresslab.models.from_checkpoint import build_model_from_checkpoint
from compresslab.bitstream.codec import compress_file, decompress_file
from compresslab.evaluation.evaluator import evaluate_model, list_eval_images
from conftest import assert_decodes_identically_elsewhere, train

TINY = {"N": 32, "M": 48, "filters": 16, "resblocks": 1}
EXPECTED_STEPS = {"fast": 3 * 3 * 1, "normal": 3 * 3 * 3, "extra": 4 * 6 * 5}


@pytest.fixture(scope="module")
def msp_ckpts(tmp_path_factory):
    out = {}
    for profile in ("fast", "normal", "extra"):
        d = tmp_path_factory.mktemp(f"msp_{profile}")
        patch = 256 if profile == "extra" else 128
        res = train(d, [f"model=msp/{profile}", *[f"model.{k}={v}" for k, v in TINY.items()],
                        f"data.patch_size={patch}", f"data.val_patch_size={patch}", "data.batch_size=2",
                        "data.val_batch_size=2", "trainer.max_steps=2", "trainer.val_check_interval=2",
                        "trainer.limit_val_batches=1", "callbacks.rd_eval.enabled=false"])
        assert res["global_step"] == 2
        out[profile] = res["last_ckpt"]
    return out


@pytest.mark.slow
@pytest.mark.parametrize("profile", ["fast", "normal", "extra"])
def test_each_profile_trains_and_codes_end_to_end(msp_ckpts, kodak_crops, profile):
    model, meta = build_model_from_checkpoint(msp_ckpts[profile])
    assert meta["model"]["profile"] == profile and model.sequential_steps == EXPECTED_STEPS[profile]
    res = evaluate_model(model, list_eval_images(kodak_crops, 1))  # raises if decoded latents differ
    assert 0.9 < res["mean"]["bpp_ratio"] < 1.3
    assert res["per_image"][0]["network_evaluations"] == EXPECTED_STEPS[profile]


@pytest.mark.parametrize("profile", ["fast", "normal", "extra"])
def test_sequential_steps_do_not_depend_on_image_size(profile):
    torch.manual_seed(0)
    m = models.build({"name": "msp", "profile": profile, **TINY}).eval()
    m.update(force=True)
    counts = set()
    for h, w in ((256, 256), (256, 512), (512, 768)):
        enc = m.compress(torch.rand(1, 3, h, w))
        dec = m.decompress(enc["strings"], enc["shape"])
        assert torch.equal(dec["latents"]["y"], enc["latents"]["y"])
        counts.add(dec["network_evaluations"])
    assert counts == {EXPECTED_STEPS[profile]}


def test_odd_latent_sizes_and_too_small_inputs():
    m = models.build({"name": "msp", "profile": "normal", **TINY}).eval()
    m.update(force=True)
    enc = m.compress(torch.rand(1, 3, 144, 176))  # latent 9x11 -> 4x5 -> 2x2 -> 1x1
    assert tuple(enc["shape"]) == (9, 11)
    dec = m.decompress(enc["strings"], enc["shape"])
    assert torch.equal(dec["latents"]["y"], enc["latents"]["y"])
    with pytest.raises(ValueError, match="too small for 3 MSP scales.*patch_size >= 128"):
        m(torch.rand(1, 3, 64, 64))


@pytest.mark.slow
def test_msp_decodes_bit_exactly_in_another_process(data_root, tmp_path, msp_ckpts):
    ckpt = msp_ckpts["normal"]
    src = tmp_path / "in.png"
    Image.open(data_root / "kodak" / "kodim15.png").convert("RGB").crop((0, 0, 200, 150)).save(src)
    compress_file(ckpt, src, tmp_path / "x.clab")
    here = decompress_file(tmp_path / "x.clab", ckpt)
    assert_decodes_identically_elsewhere(tmp_path / "x.clab", ckpt, here, tmp_path)


@pytest.mark.slow
def test_gradient_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    a = models.build({"name": "msp", "profile": "fast", **TINY}).train()
    b = models.build({"name": "msp", "profile": "fast", "grad_checkpoint": True, **TINY}).train()
    b.load_state_dict(a.state_dict())
    x = torch.rand(1, 3, 128, 128)
    grads = []
    for m in (a, b):
        torch.manual_seed(1)  # same noise
        out = m(x)
        sum(torch.log(v).sum() for v in out["likelihoods"].values()).backward()
        grads.append(m.net.head[0].weight.grad.clone())
    torch.testing.assert_close(grads[0], grads[1])


def test_gdn_transform_is_the_hyperprior_transform_and_codes_exactly():
    from compressai.models import ScaleHyperprior

    torch.manual_seed(0)
    ref = ScaleHyperprior(32, 48).eval()
    m = models.build({"name": "msp", "profile": "fast", "transform": "gdn", **TINY}).eval()
    m.g_a.load_state_dict(ref.g_a.state_dict())  # strict: same layers, same shapes
    m.g_s.load_state_dict(ref.g_s.state_dict())
    x = torch.rand(1, 3, 128, 192)
    with torch.no_grad():
        assert torch.equal(m.g_a(x), ref.g_a(x))
    m.update(force=True)
    enc = m.compress(x)
    dec = m.decompress(enc["strings"], enc["shape"])
    assert torch.equal(dec["latents"]["y"], enc["latents"]["y"])
    with pytest.raises(ValueError, match="unknown model.transform 'resnet'.*cheng_anchor"):
        models.build({"name": "msp", "transform": "resnet", **TINY})
