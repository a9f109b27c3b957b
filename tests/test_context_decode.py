"""Context models (mbt2018, cheng2020) decode honestly in evaluation: images spread over worker processes give the
rows one at a time gives, a decoder whose context prediction drifts from the encoder's is an error naming the image
(in a worker process too), and each finished image prints a progress line with the ETA on stderr."""

from __future__ import annotations

import copy
import io

import numpy as np
import pytest
import torch
from compressai.models import JointAutoregressiveHierarchicalPriors
from compressai.registry import register_model
from PIL import Image

from compresslab import models
from compresslab.evaluation.evaluator import CodecMismatchError, evaluate_model
from compresslab.evaluation.progress import Progress, mmss


@register_model("test-context-drift")
class ContextDrift(JointAutoregressiveHierarchicalPriors):
    """mbt2018 whose decoder's context prediction is off by 0.5 (its encoder is CompressAI's): a decoder out of
    sync with the encoder, as a float difference between machines would make it, but on every image."""

    def _decompress_ar(self, *args, **kwargs):
        bias = self.context_prediction.bias
        saved = bias.detach().clone()
        with torch.no_grad():
            bias.add_(0.5)
        try:
            return super()._decompress_ar(*args, **kwargs)
        finally:
            with torch.no_grad():
                bias.copy_(saved)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    d = tmp_path_factory.mktemp("ctx_imgs")
    rng = np.random.default_rng(3)
    paths = []
    for i in range(3):
        img = np.kron(rng.random((8, 8, 3)), np.ones((8, 8, 1))) * 200 + rng.random((64, 64, 3)) * 55
        paths.append(d / f"tile{i}.png")
        Image.fromarray(img.astype(np.uint8)).save(paths[-1])
    return paths


def tiny(arch: str, **extra):
    torch.manual_seed(0)
    cfg = {"name": "compressai", "arch": arch, "N": 16, "M": 16} if arch == "test-context-drift" else \
        {"name": arch, "N": 16, "M": 16}
    return models.build({**cfg, **extra})


def strip(rows):
    """Rows without the times (measurements), NaN made comparable (MS-SSIM of a 64 px image)."""
    return [{k: "nan" if v != v else v for k, v in r.items() if not k.endswith("_time")} for r in rows]


@pytest.mark.parametrize("arch", ["mbt2018", "cheng2020-anchor"])
def test_context_models_in_worker_processes_give_the_serial_rows(arch, images, capsys):
    model = tiny(arch)
    serial = evaluate_model(model, images, workers=1)
    parallel = evaluate_model(model, images, workers=2, progress=True)
    assert [r["name"] for r in parallel["per_image"]] == [p.name for p in images]
    assert strip(serial["per_image"]) == strip(parallel["per_image"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == len(images)  # one per image, in completion order, the count rising to 3/3
    assert [ln.split("]")[0] for ln in lines] == [f"[{k}/3" for k in (1, 2, 3)]
    assert {ln.split()[1] for ln in lines} == {p.name for p in images}
    assert all(" bpp " in ln and " dB " in ln and "decode " in ln and " ETA " in ln for ln in lines)
    assert lines[-1].endswith("ETA 00:00")


@pytest.mark.parametrize("workers", [1, 2])
def test_a_decoder_out_of_sync_is_an_error_naming_the_image(workers, images):
    model = tiny("test-context-drift")
    with pytest.raises(CodecMismatchError) as err:
        evaluate_model(model, images, workers=workers)
    msg = str(err.value)
    assert any(msg.startswith(p.name + ":") for p in images), msg
    assert "decoded latent 'y' differs from the encoder's" in msg


def test_the_same_architecture_in_sync_evaluates(images):
    """The error above comes from the drift alone: the class without it decodes the same images."""
    model = tiny("test-context-drift")
    model._decompress_ar = JointAutoregressiveHierarchicalPriors._decompress_ar.__get__(model)
    rows = evaluate_model(model, images[:2], workers=2)["per_image"]
    assert [r["name"] for r in rows] == [p.name for p in images[:2]]


@pytest.mark.parametrize("arch", ["mbt2018", "cheng2020-anchor"])
def test_deterministic_context_coding_does_not_depend_on_float32_arithmetic(arch, images):
    """A decoder whose float32 h_s and entropy_parameters compute 1e-4 (relative) off, as another device's float32
    arithmetic can: CompressAI's coding decodes other latents; deterministic_coding (float64 CPU copies, gridded
    means and scales) decodes the encoder's. Both code about the same number of bytes."""
    from compresslab.data.images import load_image_tensor

    x = load_image_tensor(images[0]).unsqueeze(0)
    sizes = {}
    for deterministic in (False, True):
        enc_model = tiny(arch, deterministic_coding=deterministic).eval()
        g = [m for m in enc_model.g_a.modules() if isinstance(m, torch.nn.Conv2d)][-1]
        with torch.no_grad():  # random weights code nearly all zeros: a latent with many symbols and scales
            g.weight.mul_(8)
            g.bias.mul_(8)
        enc_model.update(force=True)
        dec_model = copy.deepcopy(enc_model)
        for m in (dec_model.h_s, dec_model.entropy_parameters):  # float64 copies carry the hook but are not moved
            m.register_forward_hook(lambda mod, i, out: out * (1 + 1e-4) if out.dtype == torch.float32 else None)
        with torch.no_grad():
            enc = enc_model.compress(x)
            dec = dec_model.decompress(enc["strings"], enc["shape"])
        assert torch.equal(enc["latents"]["y"], dec["latents"]["y"]) is deterministic
        assert enc["latents"]["y"].dtype == dec["latents"]["y"].dtype == torch.float32
        sizes[deterministic] = sum(len(s) for group in enc["strings"] for s in group)
    assert abs(sizes[True] - sizes[False]) <= 0.02 * sizes[False] + 4, sizes
    # evaluation in worker processes checks the deterministic latents too
    model = tiny(arch, deterministic_coding=True)
    assert strip(evaluate_model(model, images[:2], workers=2)["per_image"]) == \
        strip(evaluate_model(model, images[:2], workers=1)["per_image"])


class FakeTTY(io.StringIO):
    def isatty(self):
        return True


def test_progress_rewrites_one_line_on_a_terminal_and_estimates_from_the_rate_so_far():
    t = iter([0.0, 10.0, 30.0])
    out = FakeTTY()
    bar = Progress(3, stream=out, clock=lambda: next(t))
    row = {"name": "kodim01.png", "bpp": 0.5, "psnr-rgb": 30.0, "decoding_time": 9.04}
    bar.update(row)  # 10 s for 1 image, 2 left
    bar.update(row)  # 30 s for 2 images, 1 left
    text = out.getvalue()
    assert "\n" not in text and text.count("\r\x1b[K") == 2
    assert text.endswith("[2/3] kodim01.png  0.5000 bpp  30.00 dB  decode 9.0 s  ETA 00:15")
    assert "ETA 00:20" in text
    bar.close()  # interrupted before the last image: the error message starts on its own line
    assert out.getvalue().endswith("\n")
    assert mmss(3725) == "62:05" and mmss(7200) == "2h00"
