"""A model built on a trained base (model=adaptive) with no model.base_ckpt: the base is a finished run found under
paths.output_dir, else CompressAI's pretrained model nearest in lambda (downloaded, hash-checked), else trained first
in the same command; each branch says which it took (base.json and the log)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, serve_zoo, train

ADAPTIVE = ["model=adaptive", "callbacks.rd_eval.enabled=false", "trainer.max_steps=2", "trainer.val_check_interval=2"]


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """No network, an empty hub cache: zoo downloads fail at once (nothing listens on port 9)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("COMPRESSLAB_MIRROR", "http://127.0.0.1:9")
    monkeypatch.delenv("COMPRESSLAB_ZOO_URLS", raising=False)


def _base(run_dir: Path) -> dict:
    return json.loads((run_dir / "base.json").read_text())


@pytest.mark.slow
def test_a_finished_base_run_under_the_output_dir_is_reused(factorized_ckpt, tmp_path, offline):
    runs = Path(factorized_ckpt).parents[1]  # the session's factorized smoke run (lambda 0.0067, N=32, M=48)
    done = json.loads((runs / "done.json").read_text())
    assert done["model"] == {"name": "factorized", "N": 32, "M": 48} and done["lambda"] == 0.0067
    train(tmp_path / "a", [*ADAPTIVE, f"paths.output_dir={runs}", "lambda=0.0067"])
    assert _base(tmp_path / "a") == {"base_ckpt": str(factorized_ckpt), "how": "run",
                                     "detail": "a finished factorized run at lambda=0.0067, N/M {'N': 32, 'M': 48}, "
                                               "loss mse"}
    # another lambda, size or loss metric is not that base
    from compresslab.training.bases import finished_runs

    assert finished_runs(runs, "factorized", 0.0067, {"N": 32, "M": 48}, "mse") == [Path(factorized_ckpt)]
    for lmbda, size, metric in ((0.013, {"N": 32, "M": 48}, "mse"), (0.0067, {"N": 64, "M": 48}, "mse"),
                                (0.0067, {"N": 32, "M": 48}, "ms-ssim")):
        assert finished_runs(runs, "factorized", lmbda, size, metric) == []


@pytest.mark.slow
def test_the_zoo_base_nearest_in_lambda_is_downloaded(server, tmp_path, monkeypatch, caplog):
    url, files = server
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("COMPRESSLAB_ZOO_URLS", str(serve_zoo(url, files, tmp_path, "bmshj2018-factorized", [4])))
    res = train(tmp_path / "a", [*ADAPTIVE, f"paths.output_dir={tmp_path / 'out'}", "lambda=0.01",
                                 "model.cache_crops_per_image=1", "data.max_train_images=8"])
    base = _base(tmp_path / "a")
    assert base["how"] == "zoo" and base["base_ckpt"] == "zoo:bmshj2018-factorized/mse/4"  # 0.013 is nearest 0.01
    assert "trained at 0.013" in base["detail"] and len(files.hits) == 1
    assert "differs from the base checkpoint's lambda 0.013" in caplog.text  # the RD point belongs to 0.013
    from compresslab.models.from_checkpoint import build_model_from_checkpoint

    _, meta = build_model_from_checkpoint(res["last_ckpt"])
    assert (meta["model"]["N"], meta["model"]["M"]) == (128, 192)  # the zoo's size for quality 4


@pytest.mark.slow
def test_with_no_run_and_no_network_the_base_is_trained_first_then_reused(tmp_path, offline):
    out = tmp_path / "out"
    train(tmp_path / "a", [*ADAPTIVE, f"paths.output_dir={out}", "lambda=0.01"])
    base = _base(tmp_path / "a")
    assert base["how"] == "trained"
    base_dir = out / "runs" / "factorized-lambda0.01" / "a-base"
    assert base["base_ckpt"] == str(base_dir / "checkpoints" / "last.ckpt") and (base_dir / "done.json").is_file()
    assert (base_dir / "config.yaml").is_file() and "name: factorized" in (base_dir / "config.yaml").read_text()
    train(tmp_path / "b", [*ADAPTIVE, f"paths.output_dir={out}", "lambda=0.01"])
    assert _base(tmp_path / "b") == {**base, "how": "run", "detail": _base(tmp_path / "b")["detail"]}


@pytest.mark.slow
def test_the_missions_command_finishes_from_an_empty_folder_then_reuses_its_base(tmp_path):
    """`python train.py model=adaptive lambda=0.01 debug=smoke` exactly, on a machine with no network and no runs."""
    fake = tmp_path / "bin"  # a machine with SLURM installed, a run not on it: no scheduler hint
    fake.mkdir()
    (fake / "srun").write_text("#!/bin/sh\nexit 1\n")
    (fake / "srun").chmod(0o755)
    env = {**os.environ, "TORCH_HOME": str(tmp_path / "torch"), "COMPRESSLAB_MIRROR": "http://127.0.0.1:9",
           "PATH": f"{fake}:{os.environ['PATH']}"}
    env.pop("SLURM_JOB_ID", None)
    cmd = [sys.executable, str(REPO / "train.py"), "model=adaptive", "lambda=0.01", "debug=smoke", "logger=csv"]
    r = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    log = r.stdout + r.stderr
    assert "base: training a factorized model first" in log and "base model (trained)" in log
    assert "outputs/runs/adaptive-lambda0.01" in r.stdout and list(tmp_path.glob("outputs/runs/factorized-lambda0.01/*"))
    assert "srun" not in log
    assert not [line for line in log.splitlines() if line.startswith("INFO: ")]  # Lightning's lines print once
    assert log.count("Seed set to 42") == 2  # once per run (base, then adaptive), not twice each
    r = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and "base model (run)" in r.stdout + r.stderr, (r.stdout + r.stderr)[-3000:]
