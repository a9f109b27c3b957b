import logging

import numpy as np
import pytest
import torch
from PIL import Image

from compresslab.data.images import DataLayoutError, load_rgb
from compresslab.data.root import resolve_data_root

from compresslab.data.module import ImageDataModule, ImageFolderDataset


@pytest.fixture
def odd_folder(tmp_path):
    d = tmp_path / "train" / "nested"
    d.mkdir(parents=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (80, 90, 3), dtype=np.uint8)).save(d / "rgb.png")
    Image.fromarray(rng.integers(0, 256, (80, 90), dtype=np.uint8), mode="L").save(d / "gray.jpg")
    rgba = rng.integers(0, 256, (80, 90, 4), dtype=np.uint8)
    rgba[..., 3] = 0  # fully transparent -> white after compositing
    Image.fromarray(rgba, mode="RGBA").save(d / "rgba.png")
    Image.fromarray((rng.integers(0, 65536, (80, 90))).astype(np.uint16)).save(d / "deep16.png")
    Image.fromarray(rng.integers(0, 256, (80, 90, 3), dtype=np.uint8)).convert("P").save(d / "palette.png")
    Image.fromarray(rng.integers(0, 256, (80, 90, 3), dtype=np.uint8)).save(d / "photo.webp")
    Image.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)).save(d / "tiny.png")
    (d / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    (d / "notes.txt").write_text("not an image")
    return tmp_path / "train"


def test_every_mode_becomes_8bit_rgb(odd_folder):
    files = {p.name: p for p in odd_folder.rglob("*.*")}
    for name in ("rgb.png", "gray.jpg", "rgba.png", "deep16.png", "palette.png", "photo.webp"):
        img = load_rgb(files[name])
        assert img.mode == "RGB" and img.size == (90, 80), name
    assert np.asarray(load_rgb(files["rgba.png"])).min() == 255  # transparent -> white, not random colour
    deep = np.asarray(Image.open(files["deep16.png"]), dtype=np.float64)
    ours = np.asarray(load_rgb(files["deep16.png"]))[..., 0]
    assert np.abs(ours - deep / 65535 * 255).max() <= 0.5 + 1e-9  # scaled, not clipped


def test_dataset_pads_or_skips_small_images_and_skips_corrupt_ones(odd_folder, caplog):
    with caplog.at_level(logging.WARNING):
        ds = ImageFolderDataset(odd_folder, patch_size=64, train=True, small_images="pad")
    assert len(ds) == 7 and "corrupt.png" not in [f.name for f in ds.files]
    assert "1 unreadable" in caplog.text
    assert all(ds[i].shape == (3, 64, 64) for i in range(len(ds)))  # tiny.png padded
    skip = ImageFolderDataset(odd_folder, patch_size=64, train=False, small_images="skip")
    assert len(skip) == 6 and skip.report.too_small == ["tiny.png"]


def test_file_that_breaks_after_the_scan_is_replaced_not_fatal(odd_folder, caplog):
    ds = ImageFolderDataset(odd_folder, patch_size=32, train=False)
    victim = ds.files[0]
    victim.write_bytes(victim.read_bytes()[:60])  # truncated after the header check
    with caplog.at_level(logging.WARNING):
        batch = [ds[0] for _ in range(3)]
    assert all(x.shape == (3, 32, 32) for x in batch)
    assert caplog.text.count("cannot decode") == 1  # reported once


def test_missing_folder_names_the_layout(tmp_path, monkeypatch):
    monkeypatch.delenv("COMPRESSLAB_DATA", raising=False)
    dm = ImageDataModule(root=str(tmp_path / "nowhere"))
    with pytest.raises(DataLayoutError, match="Expected layout.*train.*val.*kodak"):
        dm.setup()


def test_data_root_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("COMPRESSLAB_DATA", str(tmp_path / "env"))
    assert resolve_data_root(str(tmp_path / "cfg")) == tmp_path / "cfg"
    assert resolve_data_root(None) == tmp_path / "env"
    monkeypatch.delenv("COMPRESSLAB_DATA")
    assert resolve_data_root(None).name == "data"


def test_datamodule_on_shared_data_crops_and_flips(data_root):
    dm = ImageDataModule(root=str(data_root), patch_size=64, val_patch_size=128, batch_size=4, num_workers=0, max_train_images=8,
                         max_val_images=2)
    dm.setup()
    x = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 3, 64, 64) and 0 <= x.min() and x.max() <= 1
    v1 = next(iter(dm.val_dataloader()))
    v2 = next(iter(dm.val_dataloader()))
    assert v1.shape == (2, 3, 128, 128) and torch.equal(v1, v2)  # centre crops are deterministic


def test_cached_images_give_the_same_pixels_and_decode_once(tmp_path, monkeypatch):
    d = tmp_path / "imgs"
    d.mkdir()
    rng = np.random.default_rng(1)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(d / f"{i}.png")
    plain = ImageFolderDataset(d, 32, train=False)
    cached = ImageFolderDataset(d, 32, train=False, cache_images=True)
    import compresslab.data.module as data_mod

    calls = []
    real = data_mod.load_image_tensor
    monkeypatch.setattr(data_mod, "load_image_tensor", lambda p: calls.append(p) or real(p))
    for _ in range(2):
        for i in range(3):
            assert torch.equal(cached[i], plain[i])  # uint8 storage is exact for 8-bit sources
    assert len(calls) == 3 + 6  # the cached set decoded each file once; the plain one every time
