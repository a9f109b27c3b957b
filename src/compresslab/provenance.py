"""What makes a run reproducible, written into its run directory: resolved config, git state, packages, machine."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf


_PACKAGE_DIR = Path(__file__).resolve().parent


def _git(*args: str, cwd: Path | None = None) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=cwd or source_tree(), capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout if out.returncode == 0 else None


def source_tree() -> Path:
    """The git work tree whose state a run records: the one holding this package when it is run from a clone (an
    editable install), else the current folder's (a wheel used inside the user's own project)."""
    for where in (_PACKAGE_DIR, Path.cwd()):
        top = _git("rev-parse", "--show-toplevel", cwd=where)
        if top:
            return Path(top.strip())
    return Path.cwd()


def git_state() -> dict[str, Any]:
    tree = source_tree()
    commit = _git("rev-parse", "HEAD", cwd=tree)
    status = _git("status", "--porcelain", cwd=tree)
    return {
        "tree": str(tree),
        "commit": commit.strip() if commit else None,
        "dirty": bool(status and status.strip()),
        "status": status or "",
        "diff": _git("diff", "HEAD", cwd=tree) or "",
    }


def cpu_model() -> str:
    """The CPU's marketing name (Linux: /proc/cpuinfo), else what platform knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, Any]:
    """The hardware and the numeric stack a result was computed with (in every rd.json's meta)."""
    def version(dist: str) -> str | None:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return None

    return {"cpu": cpu_model(), "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "python": platform.python_version(), "torch": torch.__version__, "compressai": version("compressai"),
            "threads": torch.get_num_threads()}


def command_record(argv: list[str], started_utc: str, wall_s: float) -> dict[str, Any]:
    """What a results folder written by one command says of that command (its provenance.json): the command line,
    the code (commit, dirty), the machine, when it started and how long it took."""
    g = git_state()
    return {"command": argv, "commit": g["commit"], "dirty": g["dirty"], "machine": machine(),
            "started_utc": started_utc, "wall_s": round(wall_s, 1)}


def pip_freeze() -> str:
    dists = sorted({(d.metadata["Name"] or "?", d.version) for d in importlib.metadata.distributions()},
                   key=lambda t: t[0].lower())
    return "\n".join(f"{n}=={v}" for n, v in dists) + "\n"


def config_hash(cfg: DictConfig | dict) -> str:
    """Hash of the resolved config without run-specific paths: equal configs give equal hashes."""
    c = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    for k in ("paths", "hydra", "ckpt_path", "runtime"):
        c.pop(k, None)
    return hashlib.sha256(json.dumps(c, sort_keys=True, default=str).encode()).hexdigest()[:12]


def write_run_provenance(run_dir: Path, cfg: DictConfig) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    git = git_state()
    (run_dir / "git.json").write_text(json.dumps({k: git[k] for k in ("tree", "commit", "dirty", "status")}, indent=2))
    (run_dir / "git.diff").write_text(git["diff"])
    (run_dir / "pip-freeze.txt").write_text(pip_freeze())
    env = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "device_name": torch.cuda.get_device_name(0) if torch.cuda.is_available() else platform.processor(),
        "threads": torch.get_num_threads(),
        "seed": cfg.get("seed"),
        "config_hash": config_hash(cfg),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),  # a requeued job keeps its id; a resubmitted one has a new one
    }
    (run_dir / "environment.json").write_text(json.dumps(env, indent=2))
