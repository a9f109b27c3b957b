"""Hostile inputs at every entry point other than the .clab payload (issue 31): special files, oversized and
decompression-bomb images, empty/truncated/foreign checkpoints, unsafe archive members, unreadable shard inputs,
interrupted and failed checkpoint writes, and the user errors that must be one line before any logger starts. Each
input is built by the test; every failure must be the module's own error naming the path, with nothing left
half-written."""

import errno
import os
import struct
import tarfile
import zipfile
import zlib
from pathlib import Path

import pytest
import torch

from compresslab.io.checkpoints import (CheckpointError, CheckpointWriteError, atomic_torch_save, load_checkpoint,
                                     remove_stale_temporaries)
from compresslab.data.images import ImageDecodeError
from compresslab.bitstream.codec import check_image_size, compress_file
from compresslab.data.fetch import FetchError, _extract
from compresslab.io.inputs import InputFileError, read_regular_file
from conftest import REPO, compose


@pytest.fixture
def specials(tmp_path):
    d = tmp_path / "a_dir"
    d.mkdir()
    fifo = tmp_path / "fifo.bin"
    os.mkfifo(fifo)
    zero = tmp_path / "zero.bin"
    zero.symlink_to("/dev/zero")
    return {"directory": d, "fifo": fifo, "link to /dev/zero": zero, "character device": Path("/dev/null")}


def test_special_files_are_refused_unread_naming_what_they_are(specials):
    for kind, path in specials.items():
        with pytest.raises(InputFileError, match="not a regular file") as e:
            read_regular_file(path, 1 << 20, "compressed file")  # a FIFO would block here if it were opened
        assert str(path) in str(e.value), kind
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_regular_file(specials["directory"] / "missing", 10)


def test_reads_are_bounded_by_the_format_maximum(tmp_path):
    f = tmp_path / "big.clab"
    f.write_bytes(b"x" * 101)
    assert read_regular_file(f, 101) == b"x" * 101
    with pytest.raises(InputFileError, match="101 bytes, more than the 100"):
        read_regular_file(f, 100)


def _png_header(width: int, height: int) -> bytes:
    """A PNG declaring ``width`` x ``height`` RGB with almost no pixel data: what a bomb looks like to a reader that
    trusts the header."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + \
        chunk(b"IEND", b"")


@pytest.mark.parametrize("side,what", [(30000, "decompression-bomb limit"), (12000, "12000x12000")])
def test_oversized_images_are_refused_from_the_header_with_the_limit_named(tmp_path, side, what):
    png = tmp_path / f"bomb{side}.png"
    png.write_bytes(_png_header(side, side))
    with pytest.raises(ImageDecodeError, match=what) as e:
        check_image_size(png, max_pixels=1 << 26)
    assert "67108864 pixels" in str(e.value)
    # compress refuses before it even reads the checkpoint (which does not exist here) or writes anything
    with pytest.raises(ImageDecodeError):
        compress_file(tmp_path / "no.ckpt", png, tmp_path / "out.clab", max_pixels=1 << 26)
    assert not (tmp_path / "out.clab").exists()


def test_an_image_under_the_limit_passes_the_header_check(tmp_path):
    from PIL import Image

    Image.new("RGB", (64, 48)).save(tmp_path / "ok.png")
    assert check_image_size(tmp_path / "ok.png", max_pixels=64 * 48) == (64, 48)
    with pytest.raises(ImageDecodeError, match="3071 pixels"):
        check_image_size(tmp_path / "ok.png", max_pixels=64 * 48 - 1)


def test_empty_truncated_foreign_and_special_checkpoints_are_one_clear_error(tmp_path, specials):
    good = tmp_path / "good.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(1000)}}, good)
    cases = {"empty": b"", "truncated": good.read_bytes()[:300], "foreign": _png_header(8, 8)}
    for name, data in cases.items():
        p = tmp_path / f"{name}.ckpt"
        p.write_bytes(data)
        with pytest.raises(CheckpointError, match=str(p)):
            load_checkpoint(p)
    with pytest.raises(CheckpointError, match="empty"):
        load_checkpoint(tmp_path / "empty.ckpt")
    for kind, path in specials.items():
        with pytest.raises(CheckpointError, match="not a regular file"):
            load_checkpoint(path)


def test_a_plugin_model_that_is_not_loaded_names_the_variable(tmp_path):
    from compresslab.models.from_checkpoint import build_model_from_checkpoint

    p = tmp_path / "plugin.ckpt"
    torch.save({"state_dict": {"model.w": torch.zeros(1)}, "compresslab": {"model": {"name": "wide_factorized"}}}, p)
    with pytest.raises(CheckpointError, match="COMPRESSLAB_PLUGINS") as e:
        build_model_from_checkpoint(p)
    assert "wide_factorized" in str(e.value)


def _zip(path: Path, members: list[tuple[str, bytes, int | None]]) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for name, data, mode in members:
            info = zipfile.ZipInfo(name)
            if mode is not None:
                info.external_attr = mode << 16
            z.writestr(info, data)
    return path


def test_archive_with_a_symlink_member_is_refused_by_name_and_nothing_is_written(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    arc = _zip(tmp_path / "a.zip", [("kodak/kodim01.png", b"png", None), ("kodak/link", b"/etc/passwd", 0o120777),
                                    ("kodak/kodim02.png", b"png", None)])
    with pytest.raises(FetchError, match="'kodak/link' is a symbolic link"):
        _extract(arc, root)
    assert list(root.iterdir()) == []
    t = tmp_path / "a.tar"
    with tarfile.open(t, "w") as tf:
        info = tarfile.TarInfo("kodak/link")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc"
        tf.addfile(info)
    with pytest.raises(FetchError, match="'kodak/link' is a symbolic link"):
        _extract(t, root)
    assert list(root.iterdir()) == []


@pytest.mark.parametrize("name,why", [("../evil.png", "'..' component"), ("/etc/evil.png", "absolute path")])
def test_archive_with_an_unsafe_member_name_is_refused_by_name(tmp_path, name, why):
    root = tmp_path / "root"
    root.mkdir()
    arc = _zip(tmp_path / "u.zip", [("kodak/a.png", b"1", None), (name, b"2", None)])
    with pytest.raises(FetchError, match=why) as e:
        _extract(arc, root)
    assert repr(name) in str(e.value) and list(root.iterdir()) == []


def test_archive_that_fails_half_way_leaves_no_partial_tree(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    # "kodak/x" as a file, then "kodak/x/y.png" under it: the second member cannot be created (NotADirectoryError)
    arc = _zip(tmp_path / "b.zip", [("kodak/a.png", b"1", None), ("kodak/x", b"2", None), ("kodak/x/y.png", b"3", None)])
    with pytest.raises(FetchError, match="extraction failed"):
        _extract(arc, root)
    assert list(root.iterdir()) == []
    good = _zip(tmp_path / "c.zip", [("kodak/a.png", b"1", None), ("kodak/b.png", b"2", None)])
    _extract(good, root)
    assert sorted(p.name for p in (root / "kodak").iterdir()) == ["a.png", "b.png"]
    assert [p.name for p in root.iterdir()] == ["kodak"]  # the temporary folder is gone


def test_make_shards_refuses_an_unreadable_file_by_name_and_leaves_no_shard(tmp_path, monkeypatch):
    from PIL import Image

    import compresslab.data.shards as shards

    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    for i in range(3):
        Image.new("RGB", (8, 8), (i, 0, 0)).save(src / f"{i}.png")
    (src / "1b.png").write_bytes(b"bad sector")  # sorted between the good ones: shards already exist when it fails
    real = shards.read_regular_file

    def eio(path, *a, **k):  # what read() on a failing disk raises (EIO), through the real reader's own handling
        if path.name == "1b.png":
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return real(path, *a, **k)

    monkeypatch.setattr(shards, "read_regular_file", eio)
    with pytest.raises(InputFileError, match="Input/output error") as e:
        shards.write_shards(src, out, max_count=1)
    assert "1b.png" in str(e.value) and "no shards were written" in str(e.value)
    assert list(out.glob("*.tar")) == [] and not (out / "index.json").exists()
    monkeypatch.setattr(shards, "read_regular_file", real)
    assert shards.write_shards(src, out, max_count=1)["images"] == 4  # the same folder works once it is readable


def test_stale_checkpoint_temporaries_are_removed(tmp_path):
    ck = tmp_path / "checkpoints"
    ck.mkdir()
    stale = [ck / ".best-50.ckpt.k2j3h4.tmp", ck / ".last.ckpt.abcdef.tmp"]
    for p in stale:
        p.write_bytes(b"")
    keep = [ck / "last.ckpt", ck / "notes.tmp"]
    for p in keep:
        p.write_bytes(b"x")
    assert sorted(remove_stale_temporaries(ck)) == sorted(stale)
    assert sorted(ck.iterdir()) == sorted(keep)
    assert remove_stale_temporaries(tmp_path / "none") == []


def test_a_full_disk_is_one_error_naming_the_path_and_the_previous_checkpoint_stays(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    atomic_torch_save({"step": 1}, path)
    before = path.read_bytes()

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("compresslab.io.checkpoints.os.fsync", full)
    with pytest.raises(CheckpointWriteError, match="No space left on device") as e:
        atomic_torch_save({"step": 2}, path)
    assert str(path) in str(e.value) and "previous last.ckpt is kept intact" in str(e.value)
    assert e.value.__cause__ is None and e.value.__suppress_context__  # one error, not a chain of two
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="the check is for machines without a GPU")
def test_a_gpu_trainer_without_a_gpu_is_a_config_error_before_any_work():
    from compresslab.errors import ConfigError
    from compresslab.training.run import validate_config

    with pytest.raises(ConfigError, match="trainer=cpu"):
        validate_config(compose(["trainer=gpu"]))


@pytest.mark.slow
def test_a_missing_dataset_layout_is_one_line_before_any_logger_starts(tmp_path):
    from conftest import run_py

    run_dir = tmp_path / "run"
    r = run_py([str(REPO / "train.py"), "debug=smoke", "logger=wandb", f"data.root={tmp_path / 'nowhere'}",
                f"hydra.run.dir={run_dir}"], timeout=300)
    assert r.returncode != 0 and "Traceback" not in r.stderr, r.stderr[-2000:]
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
    assert lines[-1].startswith("data error:") and "nowhere" in lines[-1]
    assert not (run_dir / "wandb").exists() and not list(run_dir.rglob("metrics.csv"))


def test_the_cli_limits_default_to_the_decoders():
    from compresslab.cli import build_parser
    from compresslab.bitstream.codec import DEFAULT_MAX_PIXELS, DEFAULT_MEMORY_MB

    d = build_parser().parse_args(["decompress", "f.clab", "--ckpt", "c.ckpt", "-o", "o.png"])
    c = build_parser().parse_args(["compress", "c.ckpt", "i.png", "-o", "o.clab"])
    assert d.max_pixels == c.max_pixels == DEFAULT_MAX_PIXELS and d.memory_mb == DEFAULT_MEMORY_MB


def test_a_decompression_bomb_in_a_data_folder_is_an_image_error_not_a_traceback(tmp_path):
    from compresslab.data.images import load_rgb

    png = tmp_path / "bomb.png"
    png.write_bytes(_png_header(30000, 30000))
    with pytest.raises(ImageDecodeError, match="bomb.png"):
        load_rgb(png)


@pytest.mark.parametrize("device, says", [("gpu", "is not a device name"), ("cuda:7", "not on this machine"),
                                          ("meta", "not on this machine")])
def test_a_device_the_machine_lacks_is_one_line_naming_the_devices_it_has(tmp_path, capsys, device, says):
    from PIL import Image

    from compresslab.cli import main

    png, ckpt, clab = tmp_path / "i.png", tmp_path / "c.ckpt", tmp_path / "f.clab"
    Image.new("RGB", (16, 16)).save(png)
    ckpt.write_bytes(b"not read: the device is checked first")
    clab.write_bytes(b"not read either")
    has = ", ".join(["cpu", *(f"cuda:{k}" for k in range(torch.cuda.device_count()))])
    for argv in (["compress", str(ckpt), str(png), "-o", str(tmp_path / "o.clab"), "--device", device],
                 ["decompress", str(clab), "--ckpt", str(ckpt), "-o", str(tmp_path / "o.png"), "--device", device]):
        assert main(argv) != 0
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and says in err[0] and err[0].endswith(f"has: {has}"), err
    assert not (tmp_path / "o.clab").exists() and not (tmp_path / "o.png").exists()
