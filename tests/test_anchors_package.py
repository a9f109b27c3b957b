"""CompressAI's published result files ship inside the package (licence, attribution, SHA-256 per file), so BD-rate
against VTM works with no data folder and no network; the search order user > data root > package is unchanged."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import compresslab
from compresslab.rd.anchors import PACKAGE_ANCHORS, load_anchor

MANIFEST = json.loads((PACKAGE_ANCHORS / "MANIFEST-CompressAI.json").read_text())


def test_every_shipped_file_matches_its_manifest_and_the_fetch_manifest():
    fetched = {f["path"]: f["sha256"] for f in json.loads(
        (Path(compresslab.__file__).parent / "data" / "fetch_manifest.json").read_text())["anchors"]["files"]}
    assert {f["path"] for f in MANIFEST["files"]} == set(fetched)  # every file `fetch anchors` knows ships
    for f in MANIFEST["files"]:
        data = (PACKAGE_ANCHORS / f["path"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == f["sha256"] == fetched[f["path"]], f["path"]
        assert MANIFEST["upstream"]["commit"] in f["upstream_url"]
    assert "BSD 3-Clause Clear" in (PACKAGE_ANCHORS / "LICENSE-CompressAI").read_text()


def test_package_anchors_serve_when_the_data_root_has_none(tmp_path, monkeypatch):
    (tmp_path / "root").mkdir()
    monkeypatch.setenv("COMPRESSLAB_DATA", str(tmp_path / "root"))  # an empty data root
    monkeypatch.delenv("COMPRESSLAB_ANCHORS", raising=False)
    vtm = load_anchor("kodak/vtm")
    assert vtm.meta["served_from"] == "package" and vtm.meta["codec"].startswith("VVC")
    assert len(vtm.results["bpp"]) >= 6
    # a user's own file of the same name wins, and the registry says so
    own = tmp_path / "mine" / "kodak"
    own.mkdir(parents=True)
    doc = json.loads((PACKAGE_ANCHORS / "kodak" / "vtm.json").read_text())
    doc["results"]["psnr-rgb"] = [v + 1 for v in doc["results"]["psnr-rgb"]]
    (own / "vtm.json").write_text(json.dumps(doc))
    monkeypatch.setenv("COMPRESSLAB_ANCHORS", str(tmp_path / "mine"))
    with pytest.warns(UserWarning, match="overrides"):
        mine = load_anchor("kodak/vtm")
    assert mine.meta["served_from"] == "user folder" and mine.results["psnr-rgb"][0] == vtm.results["psnr-rgb"][0] + 1


@pytest.mark.slow
def test_bd_rate_cli_with_no_data_folder_prints_the_golden_number(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("COMPRESSLAB_DATA", "COMPRESSLAB_ANCHORS")}
    r = subprocess.run([sys.executable, "-m", "compresslab", "bd-rate", "kodak/vtm",
                        "kodak/compressai-bmshj2018-factorized_mse_cuda"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "BD-rate +68.01 %" in r.stdout  # CompressAI's zoo factorized vs VTM: the golden +68.0 %
    import bjontegaard as bd  # and the same number from the raw package over the shipped files

    ref = json.loads((PACKAGE_ANCHORS / "kodak" / "vtm.json").read_text())["results"]
    test = json.loads((PACKAGE_ANCHORS / "kodak" / "compressai-bmshj2018-factorized_mse_cuda.json").read_text())["results"]
    raw = bd.bd_rate(ref["bpp"], ref["psnr-rgb"], test["bpp"], test["psnr-rgb"], method="akima")
    assert f"BD-rate {raw:+.2f} %" in r.stdout
    assert not (tmp_path / "data").exists()  # nothing fetched or created


def test_anchors_lists_only_curves_and_each_loads_and_imports_no_torch(tmp_path):
    """`compresslab anchors` with no filter once listed the package's MANIFEST-CompressAI.json as an anchor and died
    loading it; the listing is a light command, so it must not pull in torch either."""
    code = ("import sys; from compresslab.cli import main; rc = main(['anchors']); "
            "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH'); sys.exit(rc)")
    env = {**os.environ, "COMPRESSLAB_DATA": str(tmp_path)}  # the package's own anchors only
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    names = [line.split()[0] for line in r.stdout.splitlines()[:-1]]
    assert "kodak/vtm" in names and not any("MANIFEST" in n for n in names)
    for n in names:
        assert load_anchor(n).results["bpp"], n
    assert r.stdout.splitlines()[-1] == "NO-TORCH"
