"""`compresslab anchors build`: the measurement rules match CompressAI's benchmark code, a user's binaries are driven
through command templates (tested with a stand-in codec whose bitstream and reconstruction we know), and a built
anchor is usable by name from the user's anchor folder."""

import json
import sys

import numpy as np
import pytest
from PIL import Image

from compresslab.rd.anchor_builder import BuildError, build_anchor

STAND_IN = """import sys
import numpy as np
from PIL import Image
mode, src, dst = sys.argv[1], sys.argv[2], sys.argv[3]
if mode == "enc":   # 'bitstream': the image quantised to steps of q, stored as PNG (so its size is known)
    q = int(sys.argv[4])
    x = np.asarray(Image.open(src).convert("RGB")).astype(np.int32)
    Image.fromarray(((x // q) * q).astype(np.uint8)).save(dst, format="PNG")
else:               # decoder: the PNG is the reconstruction
    Image.open(src).save(dst)
"""


def test_external_codec_templates_measure_bytes_and_8bit_psnr(tmp_path, kodak_crops):
    codec = tmp_path / "codec.py"
    codec.write_text(STAND_IN)
    images = sorted(kodak_crops.glob("*.png"))
    doc = build_anchor("external", images, "standin", qualities=[8, 32],
                       encoder=f"{sys.executable} {codec} enc {{input}} {{output}} {{quality}}",
                       decoder=f"{sys.executable} {codec} dec {{input}} {{output}}", ext=".png",
                       version_cmd=f"{sys.executable} --version")
    for i, q in enumerate([8, 32]):  # recompute every number independently
        bpps, psnrs = [], []
        for path in images:
            x = np.asarray(Image.open(path).convert("RGB")).astype(np.int32)
            y = ((x // q) * q).astype(np.uint8)
            f = tmp_path / f"ref{q}.png"
            Image.fromarray(y).save(f, format="PNG")
            bpps.append(f.stat().st_size * 8 / (x.shape[0] * x.shape[1]))
            psnrs.append(10 * np.log10(255 ** 2 / np.mean((x - y.astype(np.int32)) ** 2)))
        assert doc["results"]["bpp"][i] == pytest.approx(np.mean(bpps), rel=1e-12)
        assert doc["results"]["psnr-rgb"][i] == pytest.approx(np.mean(psnrs), abs=1e-4)
    meta = doc["meta"]
    assert meta["version"].startswith("Python 3") and "enc {input}" in meta["configuration"]
    assert meta["images"] == 2 and meta["builder"] == "compresslab anchors build"
    with pytest.raises(BuildError, match="encoder failed"):
        build_anchor("external", images, "broken", qualities=[8], encoder=f"{sys.executable} -c 'raise SystemExit(3)'",
                     decoder="true")


def test_jpeg_matches_compressais_benchmark_and_loads_as_an_anchor(tmp_path, kodak_crops, monkeypatch):
    from compressai.utils.bench.codecs import JPEG

    images = sorted(kodak_crops.glob("*.png"))
    doc = build_anchor("jpeg", images, "jpeg-test", qualities=[30, 75])
    for i, q in enumerate([30, 75]):
        ref = [JPEG(None).run(str(p), q, metrics=["psnr-rgb", "ms-ssim-rgb"]) for p in images]
        assert doc["results"]["bpp"][i] == pytest.approx(np.mean([r["bpp"] for r in ref]), rel=1e-12)
        assert doc["results"]["psnr-rgb"][i] == pytest.approx(np.mean([r["psnr-rgb"] for r in ref]), abs=1e-4)
        assert doc["results"]["ms-ssim-rgb"][i] == pytest.approx(np.mean([r["ms-ssim-rgb"] for r in ref]), abs=1e-5)
    (tmp_path / "mine" / "kodak").mkdir(parents=True)
    (tmp_path / "mine" / "kodak" / "jpeg-test.json").write_text(json.dumps(doc))
    monkeypatch.setenv("COMPRESSLAB_ANCHORS", str(tmp_path / "mine"))
    from compresslab.rd.anchors import load_anchor

    a = load_anchor("kodak/jpeg-test")
    assert a.meta["codec"] == "jpeg" and "libjpeg" in a.meta["version"] and a.curve()[0] == doc["results"]["bpp"]
