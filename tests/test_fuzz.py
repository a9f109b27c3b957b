"""The fuzz campaign's CI subset (issues 15/19/31): >= 1,000 mutated files over the four models, each decoded
in-process in a forked child; no signal, no hang, no exception other than ContainerError/CheckpointError, and no
decode in the classes that must be refused (an edited payload under the old digest, copied/dropped groups, duplicate
keys, header lies at scale). The full campaign is benchmarks/fuzz_decoder.py."""

import os
import time

import pytest
from PIL import Image

from compresslab.models.from_checkpoint import build_model_from_checkpoint
from compresslab.bitstream import codec
from compresslab.bitstream.fuzz import MUST_REFUSE, MUTATIONS, campaign, mutate, run_cases, special_files
from conftest import train


@pytest.fixture(scope="module")
def crop(data_root, tmp_path_factory):
    p = tmp_path_factory.mktemp("fuzz") / "in.png"
    Image.open(data_root / "kodak" / "kodim05.png").convert("RGB").crop((0, 0, 128, 128)).save(p)
    return p


@pytest.fixture(scope="module")
def msp_ckpt(tmp_path_factory):
    return train(tmp_path_factory.mktemp("msp_fuzz"), ["model=msp/fast", "callbacks.rd_eval.enabled=false"])["last_ckpt"]


@pytest.fixture(scope="module")
def adaptive_fuzz_ckpt(tmp_path_factory, factorized_ckpt):
    return train(tmp_path_factory.mktemp("adaptive_fuzz"), ["model=adaptive", f"model.base_ckpt={factorized_ckpt}",
                                                            "callbacks.rd_eval.enabled=false"])["last_ckpt"]


@pytest.mark.slow
def test_the_harness_counts_signals_hangs_and_exceptions_per_case(factorized_ckpt, crop, tmp_path):
    model, meta = build_model_from_checkpoint(factorized_ckpt)
    codec.compress_file(factorized_ckpt, crop, tmp_path / "ok.clab")
    good = (tmp_path / "ok.clab").read_bytes()

    def decode(d):
        if d == b"segv":
            os.kill(os.getpid(), 11)
        if d == b"hang":
            time.sleep(60)
        if d == b"boom":
            raise KeyError("x")
        return codec.decode_bytes(d, model, meta)

    r = run_cases(decode, [good, b"segv", good, b"hang", b"junk", b"boom", good], timeout=3)
    assert [x["outcome"] for x in r] == ["decoded", "signal", "decoded", "hang", "refused", "uncaught", "decoded"]
    assert r[1]["detail"] == "SIGSEGV" and "KeyError" in r[5]["detail"]


@pytest.mark.slow
def test_every_mutation_class_changes_the_file(factorized_ckpt, crop, tmp_path):
    import random

    codec.compress_file(factorized_ckpt, crop, tmp_path / "ok.clab")
    good = (tmp_path / "ok.clab").read_bytes()
    rng = random.Random(0)
    for m in MUTATIONS:
        assert mutate(good, rng, m).data != good, m
    payload = good[9 + int.from_bytes(good[5:9], "big"): -4]
    for _ in range(300):  # an edit under the old digest always changes the payload (else a decode is no finding)
        d = mutate(good, rng, "digest_kept").data
        assert d[9 + int.from_bytes(d[5:9], "big"): -4] != payload


@pytest.mark.slow
@pytest.mark.parametrize("name,cases", [("factorized", 416), ("hyperprior", 416), ("adaptive", 156), ("msp", 78)])
def test_fuzz_subset_no_crash_no_hang_no_uncaught_no_silent_decode(name, cases, crop, tmp_path, factorized_ckpt,
                                                                    hyperprior_ckpt, msp_ckpt, adaptive_fuzz_ckpt):
    ckpt = {"factorized": factorized_ckpt, "hyperprior": hyperprior_ckpt, "msp": msp_ckpt,
            "adaptive": adaptive_fuzz_ckpt}[name]
    model, meta = build_model_from_checkpoint(ckpt)
    codec.compress_file(ckpt, crop, tmp_path / "ok.clab")
    good = (tmp_path / "ok.clab").read_bytes()
    res = campaign(lambda d: codec.decode_bytes(d, model, meta), good, cases, seed=7, timeout=30)
    o = res["outcomes"]
    assert sum(o.values()) == cases
    assert o.get("signal", 0) == o.get("hang", 0) == o.get("uncaught", 0) == 0, res["examples"]
    assert res["silent_decodes_of_edited_payloads"] == 0
    assert o.get("refused", 0) > 0 and o.get("decoded", 0) > 0  # both paths were exercised
    for m in MUST_REFUSE:  # edited under the old digest, groups copied/dropped, duplicate keys, big header lies
        assert set(res["by_mutation"][m]) == {"refused"}, (m, res["by_mutation"][m])


@pytest.mark.slow
def test_a_version_1_file_without_digest_still_decodes(factorized_ckpt, crop, tmp_path):
    import json
    import struct
    import zlib

    from compresslab.bitstream.container import MAGIC

    codec.compress_file(factorized_ckpt, crop, tmp_path / "ok.clab")
    data = (tmp_path / "ok.clab").read_bytes()
    hlen = struct.unpack(">I", data[5:9])[0]
    header = json.loads(data[9: 9 + hlen])
    del header["payload_sha256"]
    raw = json.dumps(header).encode()
    body = MAGIC + struct.pack(">BI", 1, len(raw)) + raw + data[9 + hlen: -4]
    (tmp_path / "v1.clab").write_bytes(body + struct.pack(">I", zlib.crc32(body)))
    a = codec.decompress_file(tmp_path / "v1.clab", factorized_ckpt)
    b = codec.decompress_file(tmp_path / "ok.clab", factorized_ckpt)
    assert a.tobytes() == b.tobytes()
    v2 = body.replace(b"CLAB\x01", b"CLAB\x02", 1)  # a version-2 header must carry the digest
    (tmp_path / "v2.clab").write_bytes(v2 + struct.pack(">I", zlib.crc32(v2)))
    with pytest.raises(codec.ContainerError, match="payload_sha256"):
        codec.decompress_file(tmp_path / "v2.clab", factorized_ckpt)


@pytest.mark.slow
def test_header_lies_are_refused_before_decoding_in_process(factorized_ckpt, crop, tmp_path):
    """Issue 31's segfault and amplification cases: the payload untouched, the image size enlarged with a consistent
    latent shape. In-process (the API's path), each is refused from the header; the first by the strings' length
    bound, the others by the pixel limit, each naming what to raise."""
    from compresslab.bitstream.container import Container, ContainerError

    model, meta = build_model_from_checkpoint(factorized_ckpt)
    codec.compress_file(factorized_ckpt, crop, tmp_path / "ok.clab")
    c = Container.from_bytes((tmp_path / "ok.clab").read_bytes())
    for (h, w), match in (((8192, 8192), "need at least"), ((16384, 16384), "--max-pixels"),
                          ((32768, 8192), "--max-pixels")):
        lie = Container(c.model, c.weights_hash, h, w, list(model.coded_shape(h, w)), c.strings).to_bytes()
        with pytest.raises(ContainerError, match=match):
            codec.decode_bytes(lie, model, meta)
    # the memory estimate is checked before decoding too: a limit below it refuses even the untouched file
    good = (tmp_path / "ok.clab").read_bytes()
    with pytest.raises(ContainerError, match="above the memory limit of 16 MB.*--memory-mb"):
        codec.decode_bytes(good, model, meta, memory_mb=16)
    assert codec.decode_bytes(good, model, meta).size == (128, 128)


@pytest.mark.slow
def test_special_files_are_refused_by_every_decode_path(factorized_ckpt, tmp_path):
    from compresslab.bitstream.container import ContainerError

    for kind, path in special_files(tmp_path).items():
        for isolate in (False, True):
            with pytest.raises(ContainerError, match="not a regular file"):
                codec.decompress_file(path, factorized_ckpt, isolate=isolate)
