"""`compresslab fetch` against a local HTTP server on 127.0.0.1 serving small fake archives: checksums, extraction
into the configs' layout, a truncated download resumed with a Range request, a checksum mismatch kept aside, and one
clear line when the host cannot be reached. The network is never touched."""

import hashlib
import io
import json
import zipfile

import pytest

from compresslab.data.fetch import FetchError, Remote, Source, fetch, sources

def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()

def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()

def test_archive_is_verified_and_extracted_into_the_configs_layout(server, tmp_path):
    url, files = server
    archive = _zip({"DIV2K_valid_HR/0801.png": b"png-bytes" * 100})
    files.files["/DIV2K_valid_HR.zip"] = archive
    src = Source("div2k", "test", [Remote(f"{url}/DIV2K_valid_HR.zip", "DIV2K_valid_HR.zip", _sha(archive), True)])
    fetch(src, tmp_path, quiet=True)
    assert (tmp_path / "DIV2K_valid_HR" / "0801.png").read_bytes() == b"png-bytes" * 100
    assert not (tmp_path / "DIV2K_valid_HR.zip").exists()  # the archive is removed once extracted
    record = json.loads((tmp_path / "FETCHED.json").read_text())["DIV2K_valid_HR.zip"]
    assert record["verified"] and record["sha256"] == _sha(archive)
    files.files.clear()  # a second run needs nothing from the server
    assert fetch(src, tmp_path, quiet=True) == []

def test_truncated_download_resumes_with_a_range_request(server, tmp_path):
    url, files = server
    body = bytes(range(256)) * 400
    files.files["/kodim01.png"] = body
    files.truncate_once.add("/kodim01.png")
    src = Source("kodak", "test", [Remote(f"{url}/kodim01.png", "kodak/kodim01.png", _sha(body))])
    with pytest.raises(FetchError, match="rerun the same command to resume"):
        fetch(src, tmp_path, quiet=True)
    part = tmp_path / "kodak" / "kodim01.png.part"
    assert 0 < part.stat().st_size < len(body)  # what arrived is kept
    fetch(src, tmp_path, quiet=True)
    assert files.ranges == [f"bytes={len(body) // 2}-"]  # only the missing half was asked for
    assert (tmp_path / "kodak" / "kodim01.png").read_bytes() == body and not part.exists()

def test_checksum_mismatch_is_kept_aside_and_never_used(server, tmp_path):
    url, files = server
    files.files["/vtm.json"] = b'{"tampered": true}'
    src = Source("anchors", "test", [Remote(f"{url}/vtm.json", "kodak/vtm.json", _sha(b"the published file"))])
    with pytest.raises(FetchError) as e:
        fetch(src, tmp_path, quiet=True)
    assert "SHA-256 mismatch" in str(e.value) and "vtm.json.bad" in str(e.value)
    assert not (tmp_path / "kodak" / "vtm.json").exists()
    assert (tmp_path / "kodak" / "vtm.json.bad").read_bytes() == b'{"tampered": true}'

def test_unreachable_host_names_the_url_and_where_to_put_the_file(tmp_path):
    src = Source("kodak", "test", [Remote("http://127.0.0.1:9/kodim01.png", "kodak/kodim01.png", "0" * 64)])
    with pytest.raises(FetchError) as e:
        fetch(src, tmp_path, quiet=True)
    msg = str(e.value)
    assert "http://127.0.0.1:9/kodim01.png" in msg and str(tmp_path / "kodak" / "kodim01.png") in msg
    assert "offline?" in msg

def test_shipped_manifest_matches_the_data_we_hold(data_root):
    """Every checksummed file in the manifest is byte-identical to our copy (Kodak, CompressAI's anchors), so a user's
    download verifies against what our numbers were computed on."""

    man = sources()
    assert len(man["kodak"].files) == 24 and all(f.sha256 for f in man["kodak"].files)
    assert any(f.path == "kodak/vtm.json" for f in man["anchors"].files)
    for name, sub in (("kodak", ""), ("anchors", "anchors/")):
        for f in man[name].files:
            assert _sha((data_root / f"{sub}{f.path}").read_bytes()) == f.sha256, f.path
    vtm = next(f for f in man["anchors"].files if f.path == "kodak/vtm.json")
    assert vtm.url.endswith("869a9f5d4126d015b7de8f203fe60ee9e1608193/results/image/kodak/vtm.json")

@pytest.mark.slow
def test_a_machine_without_data_has_the_anchors_and_fetch_updates_them(data_root, server, tmp_path):
    """No data folder: bd-rate vs kodak/vtm works from the package's copy; `compresslab fetch anchors` (from a mirror
    on 127.0.0.1 with CompressAI's paths) fills <data root>/anchors, which is then served first, with the same value."""
    from urllib.parse import urlsplit

    from conftest import run_py

    url, files = server
    for f in sources()["anchors"].files:
        files.files[urlsplit(f.url).path] = (data_root / "anchors" / f.path).read_bytes()
    hm = tmp_path / "hm.json"
    hm.write_bytes((data_root / "anchors" / "kodak" / "hm.json").read_bytes())
    env = {"COMPRESSLAB_DATA": str(tmp_path / "nothing"), "COMPRESSLAB_MIRROR": url}
    r = run_py(["-m", "compresslab.cli", "bd-rate", "kodak/vtm", str(hm), "--method", "pchip"], env=env)
    assert r.returncode == 0 and "BD-rate +23.31 %" in r.stdout, r.stdout + r.stderr
    r = run_py(["-m", "compresslab.cli", "anchors", "--dataset", "kodak", "-v"], env=env)  # the package's own
    assert r.returncode == 0 and "kodak/jpeg-pillow" in r.stdout and "kodak/vtm " in r.stdout, r.stderr
    r = run_py(["-m", "compresslab.cli", "fetch", "anchors"], env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    assert (tmp_path / "nothing" / "anchors" / "kodak" / "vtm.json").is_file()
    r = run_py(["-c", "from compresslab.rd.anchors import load_anchor; "
                      "print(load_anchor('kodak/vtm').meta['served_from'])"], env=env)
    assert r.stdout.strip() == "data root", r.stderr
    r = run_py(["-m", "compresslab.cli", "bd-rate", "kodak/vtm", str(hm), "--method", "pchip"], env=env)
    assert r.returncode == 0 and "BD-rate +23.31 %" in r.stdout and "overrides" not in r.stderr, r.stdout + r.stderr

def test_a_users_anchor_folder_overrides_with_a_note(data_root, tmp_path, monkeypatch):
    from compresslab.rd import anchors as anc

    mine = tmp_path / "mine" / "kodak"
    mine.mkdir(parents=True)
    doc = json.loads((data_root / "anchors" / "kodak" / "vtm.json").read_text())
    doc["results"]["bpp"] = [1.1 * b for b in doc["results"]["bpp"]]   # "my VTM 17 build"
    (mine / "vtm.json").write_text(json.dumps(doc))
    (mine / "vtm-17.json").write_text(json.dumps(doc))
    monkeypatch.setenv("COMPRESSLAB_ANCHORS", str(tmp_path / "mine"))
    anc._warned.clear()
    with pytest.warns(UserWarning, match="overrides"):
        a = anc.load_anchor("kodak/vtm")
    assert a.path == mine / "vtm.json"
    names = anc.list_anchors()
    assert "kodak/vtm-17" in names and "kodak/hm" in names  # added to, not replacing, the other folders

def test_quickstart_data_is_cut_into_the_default_layout_and_then_found_present(server, tmp_path, monkeypatch):
    """A newcomer's training data: the archive is fetched, cut into train/ (random crops) and val/ (centre crops,
    other images), and a second `fetch` on that data root downloads nothing."""
    import numpy as np
    from PIL import Image

    from compresslab.data.fetch import fetch_many

    url, files = server
    members = {}
    for i in range(6):
        buf = io.BytesIO()
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (150, 200, 3), dtype=np.uint8)).save(buf, "PNG")
        members[f"DIV2K_valid_HR/{801 + i:04d}.png"] = buf.getvalue()
    files.files["/DIV2K_valid_HR.zip"] = _zip(members)
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"quickstart-data": {
        "about": "test", "files": [{"url": f"{url}/DIV2K_valid_HR.zip", "path": "DIV2K_valid_HR.zip",
                                    "sha256": None, "extract": True}],
        "prepare": {"crops": {"src_dir": "DIV2K_valid_HR", "train": 4, "per_image": 3, "size": 64, "val": 2,
                              "val_size": 128}}}}))
    monkeypatch.setenv("COMPRESSLAB_DATA", str(tmp_path / "data"))
    fetch_many(["quickstart-data"], quiet=True, manifest=manifest)
    train = sorted((tmp_path / "data" / "train").glob("*.png"))
    val = sorted((tmp_path / "data" / "val").glob("*.png"))
    assert len(train) == 12 and all(Image.open(f).size == (64, 64) for f in train)
    assert [f.stem for f in val] == ["0805", "0806"] and Image.open(val[0]).size == (128, 128)
    assert not {f.stem.split("_")[0] for f in train} & {f.stem for f in val}  # no image in both
    files.files.clear()
    assert fetch_many(["quickstart-data"], quiet=True, manifest=manifest) == {"quickstart-data": tmp_path / "data"}
