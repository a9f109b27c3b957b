"""Commands that only read result files, list things or print help never import torch or Lightning (seconds on a busy
machine), and the model commands refuse a missing input before importing them. Each command runs as a user runs it,
in its own process, under ``python -X importtime``: the modules it imported are read from that report."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ANCHORS = REPO / "src" / "compresslab" / "anchor_data" / "kodak"
HEAVY = ("torch", "lightning", "pytorch_lightning")


def imported(args: list[str], cwd: Path) -> tuple[subprocess.CompletedProcess, set[str]]:
    env = {k: v for k, v in os.environ.items() if k != "COMPRESSLAB_DATA"}  # the package's own anchors suffice
    r = subprocess.run([sys.executable, "-X", "importtime", "-m", "compresslab", *args], cwd=cwd, env=env,
                       capture_output=True, text=True, timeout=300)
    # "import time:       123 |        456 |     torch.nn" -> top-level names of everything imported
    mods = {line.rsplit("|", 1)[1].strip().split(".")[0] for line in r.stderr.splitlines()
            if line.startswith("import time:") and line.count("|") == 2}
    assert "compresslab" in mods, "the -X importtime report was not read: " + r.stderr[-500:]
    return r, mods


def rd_jsons() -> list[str]:
    files = sorted(str(p) for p in (REPO / "experiments").glob("*/runs/hyperprior-*/rd.json"))
    if len(files) < 2:
        pytest.skip("no committed hyperprior rd.json files to read")
    return files[:4]


LIGHT = {
    "help": ["--help"],
    "bd-rate-names": ["bd-rate", "kodak/vtm", "kodak/compressai-bmshj2018-factorized_mse_cpu"],
    "bd-rate-files": ["bd-rate", str(ANCHORS / "compressai-bmshj2018-factorized_mse_cpu.json"),
                      str(ANCHORS / "compressai-bmshj2018-hyperprior_mse_cpu.json")],
    "anchors": ["anchors"],
    "fetch-list": ["fetch", "--list"],
    "reproduce-list": ["reproduce", "--list"],
}


@pytest.mark.parametrize("name", LIGHT)
def test_light_command_imports_no_torch(name, tmp_path):
    r, mods = imported(LIGHT[name], REPO)
    assert r.returncode == 0, r.stdout[-1000:] + r.stderr[-2000:]
    assert not mods & set(HEAVY), f"`compresslab {' '.join(LIGHT[name])}` imported {sorted(mods & set(HEAVY))}"


def test_rd_and_results_check_import_no_torch(tmp_path):
    r, mods = imported(["rd", *rd_jsons(), "--out", str(tmp_path / "rd")], REPO)
    assert r.returncode == 0, r.stdout[-1000:] + r.stderr[-2000:]
    assert (tmp_path / "rd" / "rd_table.md").exists()
    assert not mods & set(HEAVY), f"rd imported {sorted(mods & set(HEAVY))}"
    page = tmp_path / "page.md"
    page.write_text("# A page\n\nNo result numbers here.\n")
    r, mods = imported(["results", "check", str(page), "--root", str(REPO)], REPO)
    assert r.returncode == 0, r.stdout[-1000:] + r.stderr[-2000:]
    assert not mods & set(HEAVY), f"results check imported {sorted(mods & set(HEAVY))}"


def subcommands() -> list[str]:
    from compresslab.cli import build_parser  # builds every command's parser: no torch (the test above checks it)

    action = next(a for a in build_parser()._actions if a.dest == "cmd")
    return sorted(action.choices)


@pytest.mark.parametrize("cmd", subcommands())
def test_every_help_page_imports_no_torch(cmd, tmp_path):
    r, mods = imported([cmd, "--help"], REPO)
    assert r.returncode == 0 and r.stdout.strip(), r.stdout[-1000:] + r.stderr[-2000:]  # train: Hydra's own help
    assert not mods & set(HEAVY), f"`compresslab {cmd} --help` imported {sorted(mods & set(HEAVY))}"


MISSING = {
    "evaluate": (["evaluate", "nothere.ckpt"], "checkpoint nothere.ckpt does not exist"),
    "export": (["export", "nothere.ckpt", "out.pth.tar"], "checkpoint nothere.ckpt does not exist"),
    "compress": (["compress", "nothere.ckpt", "kodim01.png", "-o", "x.clab"], "checkpoint nothere.ckpt does not exist"),
    "decompress": (["decompress", "nothere.clab", "--ckpt", "nothere.ckpt", "-o", "x.png"],
                   "compressed file nothere.clab does not exist"),
    "complexity": (["complexity", "hyperprior", "nothere"], "nothere: neither a checkpoint file nor a model config; "
                   "the configs are: " + ", ".join(sorted(str(p.relative_to(REPO / "conf/model").with_suffix(""))
                                                         for p in (REPO / "conf/model").rglob("*.yaml")))),
}


@pytest.mark.parametrize("name", MISSING)
def test_missing_input_is_refused_before_torch(name, tmp_path):
    args, message = MISSING[name]
    r, mods = imported(args, tmp_path)
    assert r.returncode == 2, r.stderr[-2000:]
    lines = [ln for ln in r.stderr.splitlines() if not ln.startswith("import time:")]
    assert lines == [f"compresslab {name}: error: {message}"], lines
    assert not mods & set(HEAVY), f"`compresslab {name}` imported {sorted(mods & set(HEAVY))} before refusing"
    assert not any(tmp_path.iterdir()), "a refused command wrote something"
