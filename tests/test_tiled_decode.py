"""The synthesis transform decoded tile by tile (models.tiling): the same bytes as one call on the whole latent,
whatever the tile and the thread count; refused (decoded whole) where g_s is not known to be local; and the
decoder's limits (Pillow's decompression-bomb rule, conf/decode.yaml)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from compresslab.bitstream import codec
from compresslab.bitstream.container import Container, ContainerError
from compresslab.models import tiling
from compresslab.models.tiling import NotTileable, synthesis_geometry, synthesize_rgb8
from conftest import run_py


def _g_s(arch: str) -> tuple[nn.Module, int]:
    """An untrained g_s at tiny sizes and its latent channels."""
    import compressai.registry

    from compresslab import models

    if arch in ("factorized", "hyperprior"):
        return models.build({"name": arch, "N": 8, "M": 12}).g_s, 12
    if arch.startswith("msp-"):
        m = models.build({"name": "msp", "N": 8, "M": 12, "transform": arch[4:]})
        return m.g_s, 12
    cls = compressai.registry.MODELS[arch]
    if arch.startswith("elic"):
        return cls(N=8, M=320).g_s, 320  # ELIC's channel groups need M=320
    return cls(N=8).g_s, 8


ARCHS = ["factorized", "hyperprior", "msp-gdn", "msp-cheng_anchor", "cheng2020-anchor", "cheng2020-attn",
         "elic2022-official"]


@pytest.mark.parametrize("arch", ARCHS)
def test_tiles_give_the_bytes_of_one_whole_call(arch):
    torch.manual_seed(0)
    g_s, m = _g_s(arch)
    g_s.eval()
    scale, halo = synthesis_geometry(g_s)
    assert scale == 16 and halo >= 1
    y = torch.round(torch.randn(1, m, 9, 13) * 3)
    box = (5, 11, 9 * 16 - 20, 13 * 16 - 14)  # a cropped image, as the codec's unpadding makes
    whole = synthesize_rgb8(g_s, y, box, tile=0)
    with torch.no_grad(), tiling.exact_convolutions():  # the reference: g_s as CompressAI calls it, then 8 bits
        ref = tiling.to_uint8(g_s(y))[0].permute(1, 2, 0).numpy()[5:5 + box[2], 11:11 + box[3]]
    assert np.array_equal(whole, ref)
    for tile in (2, 5):
        assert np.array_equal(synthesize_rgb8(g_s, y, box, tile), whole), f"{arch}: tile {tile} differs"


def test_a_halo_short_of_the_receptive_field_changes_pixels(monkeypatch):
    """The overlap is what makes tiles exact: one latent less and the tiles' borders differ."""
    torch.manual_seed(0)
    g_s, m = _g_s("factorized")
    y = torch.round(torch.randn(1, m, 8, 8) * 3)
    box = (0, 0, 128, 128)
    whole = synthesize_rgb8(g_s, y, box, tile=0)
    scale, halo = synthesis_geometry(g_s)
    monkeypatch.setattr(tiling, "synthesis_geometry", lambda g: (scale, halo - 1))
    assert not np.array_equal(synthesize_rgb8(g_s, y, box, tile=2), whole)


def test_a_module_of_unknown_reach_is_refused_by_name_and_decoded_whole():
    g_s = nn.Sequential(nn.ConvTranspose2d(4, 3, 5, 2, 2, 1), nn.InstanceNorm2d(3))  # a global statistic
    with pytest.raises(NotTileable, match=r"g_s\.1: .*InstanceNorm2d"):
        synthesis_geometry(g_s)
    with pytest.raises(NotTileable, match="not 'same'"):
        synthesis_geometry(nn.Sequential(nn.Conv2d(4, 3, 3, padding=0)))
    y = torch.randn(1, 4, 3, 3)
    assert synthesize_rgb8(g_s, y, (0, 0, 6, 6), tile=0).shape == (6, 6, 3)


def _tiny_ckpt(path, name: str, **sizes):
    """An untrained model, scaled so that its latents are not all zero and its pixels not one grey."""
    from compresslab import models
    from compresslab.io.checkpoints import atomic_torch_save

    cfg = {"name": name, **sizes}
    torch.manual_seed(0)
    model = models.build(cfg)
    with torch.no_grad():  # measured at N=16: latents' std ~2, pixels' std ~0.2 around 0.5, 2 % clipped
        model.g_a[-1].weight.mul_(50)
        model.g_s[-1].weight.mul_(5)
        model.g_s[-1].bias.fill_(0.5)
    atomic_torch_save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
                       "compresslab": {"model": cfg}}, path)
    return path


def test_the_estimate_follows_the_tile(tmp_path):
    from compresslab.models.from_checkpoint import build_model_from_checkpoint

    model, _ = build_model_from_checkpoint(_tiny_ckpt(tmp_path / "f.ckpt", "factorized", N=16, M=24))
    c = Container({}, "0" * 64, 2048, 2048, list(model.coded_shape(2048, 2048)), [[b""]])
    layout = model.string_layout(c.shape)
    _, halo = synthesis_geometry(model.g_s)
    assert codec.synthesis_tiles(model, c, 0) == (2048**2, 2048**2)
    peak, total = codec.synthesis_tiles(model, c, 32)
    assert peak == ((32 + 2 * halo) * 16) ** 2 and total > 2048**2  # interior tiles carry a halo on every side
    tiled, whole = codec.estimate_decode(model, c, layout, 32), codec.estimate_decode(model, c, layout, 0)
    assert tiled["bytes"] < whole["bytes"] and tiled["seconds"] > whole["seconds"]


def test_pillows_decompression_bomb_rule_is_the_default(tmp_path):
    from compresslab.bitstream.limits import decode_defaults

    assert codec.DEFAULT_WARN_PIXELS == Image.MAX_IMAGE_PIXELS == decode_defaults()["warn_pixels"]
    assert codec.DEFAULT_MAX_PIXELS == 2 * Image.MAX_IMAGE_PIXELS
    from compresslab.models.from_checkpoint import build_model_from_checkpoint

    model, meta = build_model_from_checkpoint(_tiny_ckpt(tmp_path / "f.ckpt", "factorized", N=16, M=24))
    weights = codec.weights_hash(model)

    def lie(h, w):  # a header declaring h x w with a consistent latent shape and a string far too short for it
        return Container(meta["model"], weights, h, w, list(model.coded_shape(h, w)), [[b"\0" * 64]]).to_bytes()

    with pytest.warns(Image.DecompressionBombWarning, match="9500x9500 .*89.5 MP"), \
            pytest.raises(ContainerError, match="need at least"):  # warned, then refused by the string bound
        codec.decode_bytes(lie(9500, 9500), model, meta)
    with pytest.raises(ContainerError, match="above the decoder's limit of 178956970 pixels.*--max-pixels"):
        codec.decode_bytes(lie(13400, 13400), model, meta)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["factorized", "hyperprior"])
def test_a_4mp_image_decodes_bit_exactly_tiled_in_another_process(tmp_path, name):
    """A 2048x2048 image, an untrained N=16/M=24 model: decoded here whole (tile 0, this process's threads) and by
    the CLI in an isolated child with the default tile and one thread: the same PNG bytes."""
    ckpt = _tiny_ckpt(tmp_path / f"{name}.ckpt", name, N=16, M=24)
    yy, xx = np.mgrid[0:2048, 0:2048]
    rng = np.random.default_rng(0)
    img = np.stack([xx / 8, yy / 8, (xx + yy) / 16], -1) % 256 + rng.normal(0, 12, (2048, 2048, 3))
    Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(tmp_path / "in.png")
    codec.compress_file(ckpt, tmp_path / "in.png", tmp_path / "x.clab")
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # the whole decode on 2 threads, the tiled one on 1 (an earlier test may have set 1)
    try:
        codec.decompress_file(tmp_path / "x.clab", ckpt, tmp_path / "whole.png", tile=0)
    finally:
        torch.set_num_threads(threads)
    r = run_py(["-m", "compresslab.cli", "decompress", str(tmp_path / "x.clab"), "--ckpt", str(ckpt), "-o",
                str(tmp_path / "tiled.png")], timeout=600, env={"OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-2000:]
    assert codec.DEFAULT_TILE * 16 < 2048  # the default does tile this image
    whole, tiled = (tmp_path / "whole.png").read_bytes(), (tmp_path / "tiled.png").read_bytes()
    assert tiled == whole
    assert np.asarray(Image.open(tmp_path / "whole.png")).std() > 20  # a real picture, not a clipped constant
