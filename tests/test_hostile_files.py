"""Crafted .clab files (issue 19): each crash class is made by the test from a fresh compress, with the CRC-32
recomputed so the damage reaches the parser or the entropy decoder. Nothing may crash the test process or escape
as anything but ContainerError / CheckpointError."""

import json
import struct
import zlib

import pytest
from PIL import Image

from compresslab.io.checkpoints import CheckpointError
from compresslab.bitstream.codec import compress_file, decompress_file
from compresslab.bitstream.container import MAGIC, Container, ContainerError
from conftest import run_py


def _raw(header: bytes, payload: bytes) -> bytes:
    body = MAGIC + struct.pack(">BI", 1, len(header)) + header + payload
    return body + struct.pack(">I", zlib.crc32(body))


@pytest.fixture(scope="module")
def encoded(data_root, tmp_path_factory, hyperprior_ckpt):
    d = tmp_path_factory.mktemp("hostile")
    src = d / "in.png"
    Image.open(data_root / "kodak" / "kodim05.png").convert("RGB").crop((0, 0, 128, 128)).save(src)
    compress_file(hyperprior_ckpt, src, d / "ok.clab")
    good = (d / "ok.clab").read_bytes()
    hlen = struct.unpack(">I", good[5:9])[0]
    return d, json.loads(good[9: 9 + hlen]), good[9 + hlen: -4]


def _header_variant(header: dict, **changes) -> bytes:
    return json.dumps({**header, **changes}).encode()


@pytest.mark.slow
@pytest.mark.parametrize("case", ["deep_json", "infinity", "float_size", "huge_shape", "shape_mismatch",
                                  "negative_length", "string_length", "non_object"])
def test_crafted_headers_are_refused_by_name(encoded, hyperprior_ckpt, case):
    d, header, payload = encoded
    raw = {
        "deep_json": lambda: _header_variant(header).replace(b'"model":', b'"x": ' + b"[" * 100000 + b"]" * 100000
                                                             + b', "model":', 1),
        "infinity": lambda: _header_variant(header).replace(f'"height": {header["height"]}'.encode(),
                                                            b'"height": Infinity'),
        "float_size": lambda: _header_variant(header, width=1e308),
        "huge_shape": lambda: _header_variant(header, shape=[4096, 4096]),
        "shape_mismatch": lambda: _header_variant(header, shape=[header["shape"][0] + 1, header["shape"][1]]),
        "negative_length": lambda: _header_variant(header, lengths=[[-1], [len(payload) + 1]]),
        "string_length": lambda: _header_variant(header, lengths=[["7"], [1]]),
        "non_object": lambda: b"[1, 2, 3]",
    }[case]()
    f = d / f"{case}.clab"
    f.write_bytes(_raw(raw, payload))
    with pytest.raises(ContainerError):
        decompress_file(f, hyperprior_ckpt)


@pytest.mark.slow
def test_garbage_payload_cannot_crash_the_caller(encoded, hyperprior_ckpt):
    """Payload bytes replaced (lengths kept, CRC recomputed): the isolated decoder either decodes something or
    fails; whatever CompressAI's rANS code does with it, this process gets a ContainerError or an image."""
    d, header, payload = encoded
    c = Container.from_bytes((d / "ok.clab").read_bytes())
    outcomes = []
    for i, fill in enumerate((0xFF, 0x00, 0xA5)):
        strings = [[bytes([fill]) * len(s) for s in g] for g in c.strings]
        f = d / f"garbage{i}.clab"
        f.write_bytes(Container(c.model, c.weights_hash, c.height, c.width, c.shape, strings).to_bytes())
        try:
            img = decompress_file(f, hyperprior_ckpt, isolate=True, timeout=120)
            outcomes.append(img.size)
        except ContainerError as e:
            outcomes.append(str(e))
    assert len(outcomes) == 3  # we are still here: no signal reached this process


@pytest.mark.slow
def test_isolated_decode_matches_in_process_and_reports_checkpoint_errors(encoded, hyperprior_ckpt, factorized_ckpt):
    d, _, _ = encoded
    a = decompress_file(d / "ok.clab", hyperprior_ckpt, isolate=True)
    b = decompress_file(d / "ok.clab", hyperprior_ckpt)
    assert a.tobytes() == b.tobytes()
    with pytest.raises(CheckpointError, match="encoded with model 'hyperprior'"):
        decompress_file(d / "ok.clab", factorized_ckpt, isolate=True)


@pytest.mark.slow
def test_cli_decompress_is_isolated_and_exits_cleanly_on_a_killed_decoder(encoded, hyperprior_ckpt, tmp_path):
    """A decoder killed by a signal (simulated with a memory limit too small to import torch) is one clean line."""
    d, _, _ = encoded
    r = run_py(["-m", "compresslab.cli", "decompress", str(d / "ok.clab"), "--ckpt", str(hyperprior_ckpt),
                "-o", str(tmp_path / "x.png"), "--memory-mb", "64"], timeout=300)
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "ok.clab" in r.stderr.strip().splitlines()[-1]


@pytest.mark.slow
def test_cli_decompress_refuses_special_files_in_one_line(hyperprior_ckpt, tmp_path):
    """A directory, a FIFO (which would block the reader before any timeout) and a link to /dev/zero (which would
    be read until memory runs out): one line naming the path, exit 2, nothing written."""
    import os

    (tmp_path / "d.clab").mkdir()
    os.mkfifo(tmp_path / "f.clab")
    (tmp_path / "z.clab").symlink_to("/dev/zero")
    for name in ("d.clab", "f.clab", "z.clab"):
        r = run_py(["-m", "compresslab.cli", "decompress", str(tmp_path / name), "--ckpt", str(hyperprior_ckpt),
                    "-o", str(tmp_path / "x.png")], timeout=120)
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and name in lines[0] and "not a regular file" in lines[0]
    assert not (tmp_path / "x.png").exists()


@pytest.mark.slow
def test_isolated_decode_keeps_a_lower_address_space_limit(encoded, hyperprior_ckpt, tmp_path):
    """Under `ulimit -v 8G` the default --memory-mb (16 GB) used to fail in preexec_fn: the child now keeps the
    environment's lower limit, and the decode succeeds."""
    import resource

    d, _, _ = encoded

    def ulimit_v_8g():
        resource.setrlimit(resource.RLIMIT_AS, (8 << 30, 8 << 30))

    r = run_py(["-m", "compresslab.cli", "decompress", str(d / "ok.clab"), "--ckpt", str(hyperprior_ckpt),
                "-o", str(tmp_path / "x.png")], timeout=300, preexec_fn=ulimit_v_8g)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "x.png").stat().st_size > 0
