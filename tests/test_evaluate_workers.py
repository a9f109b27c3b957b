"""Images evaluated at once (evaluate_model(workers=N), the CLI's default on several cores) give exactly the rows one
at a time gives: same bytes, PSNR, MS-SSIM, estimate and model reports, in the images' order."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from compresslab import models
from conftest import run_py
from compresslab.evaluation.evaluator import evaluate_model
from compresslab.evaluation.metrics import psnr_8bit


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    d = tmp_path_factory.mktemp("imgs")
    rng = np.random.default_rng(0)
    paths = []
    for i, (h, w) in enumerate([(192, 192), (176, 208), (192, 160), (200, 192)]):  # 160 px: MS-SSIM NaN, kept
        smooth = rng.random((h // 8, w // 8, 3))
        img = np.kron(smooth, np.ones((8, 8, 1))) * 200 + rng.random((h, w, 3)) * 55  # texture a codec can code
        paths.append(d / f"img{i}.png")
        Image.fromarray(img.astype(np.uint8)).save(paths[-1])
    return paths


# MSP keeps per-call state (its network-evaluation count): each worker needs its own copy. Its sequential decoder is
# slow on CPU (~25 s per 64 px crop on a busy 2-core machine): two crops, in the slow set.
@pytest.mark.parametrize("cfg,n,crop", [({"name": "factorized", "N": 16, "M": 24}, 4, None),
                                        ({"name": "hyperprior", "N": 16, "M": 24}, 4, None),
                                        pytest.param({"name": "msp", "N": 16, "M": 24}, 2, 64, marks=pytest.mark.slow)],
                         ids=["factorized", "hyperprior", "msp"])
def test_workers_give_the_rows_one_image_at_a_time_gives(cfg, n, crop, images):
    torch.manual_seed(0)
    model = models.build(cfg)
    threads = torch.get_num_threads()
    images = images[:n]
    serial = evaluate_model(model, images, crop=crop, workers=1)
    parallel = evaluate_model(model, images, crop=crop, workers=3)
    assert torch.get_num_threads() == threads  # the intra-op setting is restored
    assert [r["name"] for r in parallel["per_image"]] == [p.name for p in images]
    assert strip(serial["per_image"]) == strip(parallel["per_image"])


def strip(rows):
    """Rows without the times (measurements), NaN made comparable (NaN != NaN)."""
    return [{k: "nan" if v != v else v for k, v in r.items() if not k.endswith("_time")} for r in rows]


def test_psnr_is_the_exact_mse_of_8bit_values():
    """The 8-bit MSE is a ratio of integers: computed exactly, whatever torch's thread count."""
    g = torch.Generator().manual_seed(1)
    x, y = torch.rand(1, 3, 64, 96, generator=g), torch.rand(1, 3, 64, 96, generator=g)
    a, b = (x * 255).clamp(0, 255).round().long(), (y * 255).clamp(0, 255).round().long()
    sse = int(((a - b) ** 2).sum())
    expected = 10 * np.log10(255**2 / (sse / a.numel()))
    threads = torch.get_num_threads()
    try:
        got = set()
        for n in (1, 2):
            torch.set_num_threads(n)
            got.add(psnr_8bit(x, y))
    finally:
        torch.set_num_threads(threads)
    assert len(got) == 1 and abs(got.pop() - expected) < 1e-12


@pytest.mark.parametrize("flag", ["--workers", "--threads"])
def test_a_count_below_one_is_one_line_before_any_work(tmp_path, flag):
    ckpt = tmp_path / "x.ckpt"
    ckpt.write_bytes(b"not read")
    r = run_py(["-m", "compresslab", "evaluate", str(ckpt), flag, "0"], timeout=60)
    assert r.returncode == 2 and r.stderr.strip() == f"compresslab evaluate: error: {flag} 0: give 1 or more " \
        "(leave it out for the default)", r.stderr
