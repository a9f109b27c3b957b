"""The package works outside the clone: a wheel built from this tree, installed into a fresh virtual environment
(reusing this environment's torch & co. through a path file, never the source tree), runs from an empty folder."""

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from conftest import REPO, require_data


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("wheel")
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                        str(tmp / "dist"), str(REPO)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    wheel = next((tmp / "dist").glob("compresslab-*.whl"))
    import zipfile

    names = set(zipfile.ZipFile(wheel).namelist())
    for must in ("compresslab/conf/train.yaml", "compresslab/conf/model/adaptive.yaml",
                 "compresslab/anchor_data/kodak/vtm.json", "compresslab/anchor_data/LICENSE-CompressAI",
                 "compresslab/anchor_data/MANIFEST-CompressAI.json", "compresslab/drivers/pipeline.py", "compresslab/conf/pipeline/rd_cpu_proxy.yaml",
                 "hydra_plugins/compresslab_searchpath/__init__.py"):
        assert must in names, must
    subprocess.run([sys.executable, "-m", "venv", str(tmp / "venv")], check=True, timeout=300)
    py = tmp / "venv" / "bin" / "python"
    site = subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    # torch, CompressAI, Lightning … from this environment; its .pth files (our editable install) are not processed
    Path(site, "reuse_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    r = subprocess.run([py, "-m", "pip", "install", "-q", "--no-deps", str(wheel)], capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return tmp / "venv" / "bin"


def _run(bin_dir: Path, cwd: Path, *args: str, data: bool = True, timeout: int = 600):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "COMPRESSLAB_DATA", "COMPRESSLAB_ANCHORS")}
    env.update(WANDB_MODE="offline", PYTHONWARNINGS="ignore", **({"COMPRESSLAB_DATA": str(require_data())} if data else {}))
    return subprocess.run([str(bin_dir / "compresslab"), *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.slow
def test_an_installed_wheel_trains_evaluates_compares_and_lists_reproductions_from_an_empty_folder(wheel_venv,
                                                                                                     tmp_path):
    where = subprocess.run([str(wheel_venv / "python"), "-c", "import compresslab, compresslab.conf as c; "
                            "print(compresslab.__file__); print(c.CONF_DIR)"], cwd=tmp_path, capture_output=True,
                           text=True, check=True).stdout.split()
    assert all(str(wheel_venv.parent) in w and str(REPO) not in w for w in where)  # the wheel, not the clone
    r = _run(wheel_venv, tmp_path, "train", "model=factorized", "debug=smoke", "logger=csv")
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    ckpt = next(tmp_path.glob("outputs/runs/factorized-lambda0.0067/*/checkpoints/last.ckpt"))
    assert "training: 8 steps at" in r.stdout + r.stderr
    r = _run(wheel_venv, tmp_path, "evaluate", str(ckpt), "--max-images", "1", "--crop", "64", "--out", "e.json")
    assert r.returncode == 0 and (tmp_path / "e.json").is_file(), r.stderr[-2000:]
    r = _run(wheel_venv, tmp_path, "bd-rate", "kodak/vtm", "kodak/compressai-bmshj2018-factorized_mse_cuda", data=False)
    assert r.returncode == 0 and "BD-rate +68.01 %" in r.stdout, r.stdout + r.stderr
    r = _run(wheel_venv, tmp_path, "reproduce", "ulhaq2024", "--profile", "cpu_proxy", "--dry-run")
    assert r.returncode == 0 and "-m compresslab.drivers.pipeline rd_cpu_proxy --queues factorized" in r.stdout, r.stderr[-2000:]
    r = subprocess.run([str(wheel_venv / "python"), "-m", "compresslab.drivers.pipeline", "--help"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "--queues" in r.stdout, r.stderr[-2000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.json", "outputs"]  # nothing written anywhere else
