"""CompressAI zoo models as checkpoint sources, through the real loading path (download into torch hub's cache with
the hash check of the file name, CompressAI's key renaming, weights_only) with files built from CompressAI's own
classes in the layout of the released 2020 files, served from 127.0.0.1: the network is never touched."""

import json
import os

import pytest
import torch
from compressai.models import FactorizedPrior
from compressai.zoo.image import model_urls

from compresslab.io.checkpoints import CheckpointError
from compresslab.models.from_checkpoint import build_model_from_checkpoint
from conftest import compose, serve_zoo

SPEC = "zoo:bmshj2018-factorized/mse/3"


@pytest.fixture
def hub_with_factorized_q3(server, tmp_path, monkeypatch):
    """Quality 3 (N=128, M=192) served in the released layout and downloaded once into an empty hub cache."""
    from compressai.zoo.pretrained import load_pretrained

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    url, files = server
    monkeypatch.setenv("COMPRESSLAB_ZOO_URLS", str(serve_zoo(url, files, tmp_path, "bmshj2018-factorized", [3])))
    build_model_from_checkpoint(SPEC)
    f = next((tmp_path / "torch" / "hub" / "checkpoints").iterdir())
    ref = FactorizedPrior.from_state_dict(load_pretrained(torch.load(f, weights_only=True)))
    ref.update(force=True)
    return ref.eval(), f


def test_zoo_spec_loads_the_cached_file_into_our_model_and_codes_like_compressai(hub_with_factorized_q3):
    ref, f = hub_with_factorized_q3
    model, meta = build_model_from_checkpoint(SPEC)
    assert meta["model"] == {"name": "factorized", "N": 128, "M": 192}
    assert meta["source"]["url"].endswith(f.name) and len(meta["source"]["sha256"]) == 64
    x = torch.rand(1, 3, 64, 64)
    assert model.compress(x)["strings"] == ref.compress(x)["strings"]  # CompressAI's own class, same weights


def test_missing_zoo_file_names_the_file_the_url_and_the_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    url = model_urls["bmshj2018-factorized"]["mse"][3]
    monkeypatch.setenv("COMPRESSLAB_MIRROR", "http://127.0.0.1:9")  # nothing listens there: a machine offline
    with pytest.raises(CheckpointError) as e:
        build_model_from_checkpoint(SPEC)
    msg = str(e.value)
    assert os.path.basename(url) in msg and str(tmp_path / "empty" / "hub" / "checkpoints") in msg
    assert "127.0.0.1:9" in msg and "download failed" in msg and "\n" not in msg  # one line: file, URL, folder, why
    with pytest.raises(CheckpointError, match="'elic2022-official' has no zoo weights that a CompressLab model loads"):
        build_model_from_checkpoint("zoo:elic2022-official/mse/3")
    with pytest.raises(CheckpointError, match="quality"):
        build_model_from_checkpoint("zoo:bmshj2018-factorized/mse/99")


def test_zoo_spec_works_in_the_cli_and_in_config(hub_with_factorized_q3, tmp_path, kodak_crops, capsys):
    from compresslab.cli import main

    assert main(["evaluate", SPEC, "--images", str(kodak_crops), "--max-images", "1",
                 "--out", str(tmp_path / "e.json")]) == 0
    doc = json.loads((tmp_path / "e.json").read_text())
    assert doc["results"]["bpp"][0] > 0
    assert compose([f"init_from={SPEC}"]).init_from == SPEC  # Hydra keeps the spec as one string


@pytest.fixture
def empty_hub(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch" / "hub" / "checkpoints"


@pytest.mark.parametrize("arch,cls", [("bmshj2018-factorized", "FactorizedPrior"),
                                      ("bmshj2018-hyperprior", "ScaleHyperprior")])
def test_a_released_layout_file_downloads_verifies_and_codes_like_compressai(server, tmp_path, empty_hub, monkeypatch,
                                                                             arch, cls):
    import compressai.models
    from compressai.zoo.image import cfgs

    url, files = server
    monkeypatch.setenv("COMPRESSLAB_ZOO_URLS", str(serve_zoo(url, files, tmp_path, arch, [2])))
    model, meta = build_model_from_checkpoint(f"zoo:{arch}/mse/2")
    name = next(iter(files.files))
    assert files.hits == [name] and (empty_hub / os.path.basename(name)).is_file()
    assert meta["source"]["url"] == url + name and meta["source"]["sha256"].startswith(name.split("-")[-1][:8])
    assert not list(empty_hub.glob("*.partial"))
    # CompressAI's own class with CompressAI's own loading of the same released-layout file
    from compressai.zoo.pretrained import load_pretrained

    ref = getattr(compressai.models, cls).from_state_dict(
        load_pretrained(torch.load(empty_hub / os.path.basename(name), weights_only=True))).eval()
    ref.update(force=True)
    assert (ref.N, ref.M) == cfgs[arch][2] and (model.N, model.M) == cfgs[arch][2]
    x = torch.rand(1, 3, 128, 128)
    assert model.compress(x)["strings"] == ref.compress(x)["strings"]
    files.files.clear()  # cached now: a second load reads the file and asks nothing of the server
    build_model_from_checkpoint(f"zoo:{arch}/mse/2")
    assert files.hits == [name]


def test_a_wrong_hash_is_refused_and_nothing_is_cached(server, tmp_path, empty_hub, monkeypatch):
    url, files = server
    monkeypatch.setenv("COMPRESSLAB_ZOO_URLS", str(serve_zoo(url, files, tmp_path, "bmshj2018-factorized", [1],
                                                             wrong_hash=[1])))
    with pytest.raises(CheckpointError, match="does not start with 0badc0de.*refused, nothing cached"):
        build_model_from_checkpoint("zoo:bmshj2018-factorized/mse/1")
    assert not empty_hub.exists() or not list(empty_hub.iterdir())  # neither the file nor a .partial stays


def test_a_cached_file_that_does_not_match_its_name_is_refused(server, tmp_path, empty_hub, monkeypatch):
    url, files = server
    monkeypatch.setenv("COMPRESSLAB_ZOO_URLS", str(serve_zoo(url, files, tmp_path, "bmshj2018-factorized", [1])))
    build_model_from_checkpoint("zoo:bmshj2018-factorized/mse/1")
    cached = next(empty_hub.iterdir())
    cached.write_bytes(cached.read_bytes()[:-10] + b"0123456789")  # bit rot, or a file copied in by hand
    with pytest.raises(CheckpointError, match="does not match the hash in its name.*delete it"):
        build_model_from_checkpoint("zoo:bmshj2018-factorized/mse/1")


def test_zoo_urls_table_and_mirror(tmp_path, monkeypatch):
    from compresslab.io.zoo import nearest_quality, zoo_url

    monkeypatch.delenv("COMPRESSLAB_ZOO_URLS", raising=False)
    monkeypatch.setenv("COMPRESSLAB_MIRROR", "http://lab-mirror:8000/compressai")
    assert zoo_url("bmshj2018-factorized", "mse", 1) == \
        "http://lab-mirror:8000/compressai/models/v1/bmshj2018-factorized-prior-1-446d5c7f.pth.tar"
    assert [nearest_quality(v) for v in (0.001, 0.0018, 0.01, 0.0067, 0.5)] == [1, 1, 4, 3, 8]
