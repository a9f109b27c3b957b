"""CompressAI zoo models as checkpoint sources, through the real loading path (torch hub cache, CompressAI's URL
table and file names, weights_only) with a locally generated state dict: the network is never touched."""

import json
import os

import pytest
import torch
from compressai.models import FactorizedPrior
from compressai.zoo.image import model_urls

from compresslab.checkpoints import CheckpointError
from compresslab.models.from_checkpoint import build_model_from_checkpoint
from conftest import compose

SPEC = "zoo:bmshj2018-factorized/mse/3"


@pytest.fixture
def hub_with_factorized_q3(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    torch.manual_seed(0)
    ref = FactorizedPrior(128, 192)  # quality 3's size in CompressAI's zoo table
    ref.update(force=True)
    url = model_urls["bmshj2018-factorized"]["mse"][3]
    f = tmp_path / "torch" / "hub" / "checkpoints" / os.path.basename(url)
    f.parent.mkdir(parents=True)
    torch.save(ref.state_dict(), f)
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
    with pytest.raises(CheckpointError) as e:
        build_model_from_checkpoint(SPEC)
    msg = str(e.value)
    assert url in msg and str(tmp_path / "empty" / "hub" / "checkpoints") in msg
    with pytest.raises(CheckpointError, match="no CompressLab model"):
        build_model_from_checkpoint("zoo:cheng2020-anchor/mse/3")
    with pytest.raises(CheckpointError, match="quality"):
        build_model_from_checkpoint("zoo:bmshj2018-factorized/mse/99")


def test_zoo_spec_works_in_the_cli_and_in_config(hub_with_factorized_q3, tmp_path, kodak_crops, capsys):
    from compresslab.cli import main

    assert main(["evaluate", SPEC, "--images", str(kodak_crops), "--max-images", "1",
                 "--out", str(tmp_path / "e.json")]) == 0
    doc = json.loads((tmp_path / "e.json").read_text())
    assert doc["results"]["bpp"][0] > 0
    assert compose([f"init_from={SPEC}"]).init_from == SPEC  # Hydra keeps the spec as one string
