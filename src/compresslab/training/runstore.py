"""A run is a record, not a folder name: an id two processes cannot share, a lock on its folder, a state file
(``run.json``) written atomically at start, checkpoint and end, and the rule that the same command into the same folder
continues it (or refuses, naming what changed).

Everything here reads and writes plain files in the run folder, so it works on a cluster's shared file system, where
one database written by many nodes does not; ``compresslab runs`` reads the same files."""

from __future__ import annotations

import json
import os
import secrets
import socket
import string
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from compresslab.errors import ConfigError
from compresslab.io.atomic import atomic_write_bytes, probe_writable

STATE_FILE = "run.json"
LOCK_FILE = "run.lock"
STATES = ("running", "finished", "failed", "interrupted")
# keys that say how to continue, not what is trained: they may differ between the segments of one run
RESUME_KEYS = ("resume", "ckpt_path", "runtime", "paths", "hydra", "threads", "requeue_margin_s")
_ALPHABET = string.ascii_lowercase + string.digits


class RunLockedError(ConfigError):
    """Another live process holds the run folder."""


def new_run_id() -> str:
    """8 characters of [a-z0-9] (W&B's run id alphabet): 2.8e12 values, so concurrent starts never share one."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(8))


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def write_json_atomic(path: Path, doc: dict[str, Any]) -> None:
    """A reader (another node, `compresslab runs`) sees the old file or the new one, never half."""
    atomic_write_bytes(path, (json.dumps(doc, indent=2, default=str) + "\n").encode())


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, another user's
        return True
    return True


def _holder_line(held: dict[str, Any]) -> str:
    job = f", SLURM job {held['slurm_job_id']}" if held.get("slurm_job_id") else ""
    return f"pid {held.get('pid')} on {held.get('host')}{job}, since {held.get('started_utc')}"


def stale_reason(held: dict[str, Any]) -> str | None:
    """Why a lock's holder is certainly gone, or None while it may be alive. On this host: its pid is not running.
    In SLURM: it was an earlier start of this same job (a requeued job keeps its id, and SLURM never runs one job id
    twice at once). A holder on another host outside SLURM cannot be checked from here, so it is never called stale."""
    job = os.environ.get("SLURM_JOB_ID")
    if job and str(held.get("slurm_job_id")) == job and held.get("pid") != os.getpid():
        return f"an earlier start of this SLURM job ({job})"
    if held.get("host") == socket.gethostname():
        pid = held.get("pid")
        if not isinstance(pid, int) or not _pid_alive(pid):
            return f"pid {pid} is not running on {held.get('host')}"
    return None


class RunLock:
    """An exclusive lock on a run folder: ``run.lock`` created with O_EXCL (atomic on local and NFS v3+ file systems),
    holding the holder's pid, host, start and SLURM job. Released at exit; a lock left by a killed process is named
    and replaced when its holder is certainly gone (``stale_reason``)."""

    def __init__(self, run_dir: Path, run_id: str):
        self.path = run_dir / LOCK_FILE
        self.run_id = run_id
        self.held = False
        self.replaced: str | None = None

    def acquire(self) -> "RunLock":
        me = {"pid": os.getpid(), "host": socket.gethostname(), "started_utc": utc_now(), "run_id": self.run_id,
              "slurm_job_id": os.environ.get("SLURM_JOB_ID")}
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                held = read_json(self.path)
                if held is None:  # being written this instant, or an empty file left by a crash mid-write
                    time.sleep(0.2)
                    held = read_json(self.path) or {}
                why = stale_reason(held) if held else "the lock file is empty or unreadable"
                if why is None:
                    raise RunLockedError(
                        f"{self.path.parent} is in use by another run ({_holder_line(held)}; {self.path}): wait for it "
                        f"to end, or start a new run folder (resume=never, or another hydra.run.dir)") from None
                self.replaced = f"a stale lock ({_holder_line(held)}: {why})"
                try:
                    self.path.unlink()
                except FileNotFoundError:
                    pass
                continue
            with os.fdopen(fd, "w") as f:
                f.write(json.dumps(me) + "\n")
            self.held = True
            return self
        raise RunLockedError(f"{self.path.parent}: could not take {self.path} (other processes keep taking it)")

    def release(self) -> None:
        if not self.held:
            return
        held = read_json(self.path) or {}
        if held.get("pid") == os.getpid():
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass
        self.held = False


LEGACY_POLICIES = {"slurm": "auto", "always": "auto"}  # earlier names: both now mean auto


def resume_policy(value: Any) -> str:
    policy = str(value or "auto")
    return LEGACY_POLICIES.get(policy, policy)


def id_for(run_dir: Path) -> str:
    """The run's id: the one its run.json holds, else the id at the end of its folder name (conf/train.yaml puts a
    fresh one there: ``<time>-<id>``), else a new one."""
    state = read_json(run_dir / STATE_FILE)
    if state and state.get("id"):
        return str(state["id"])
    tail = run_dir.name.rsplit("-", 1)[-1]
    return tail if len(tail) == 8 and all(c in _ALPHABET for c in tail) else new_run_id()


def comparable_config(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k not in RESUME_KEYS}


def config_diff(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """``key: old -> new`` for every leaf that differs (dotted keys), sorted."""
    out = []
    for k in sorted(set(old) | set(new), key=str):
        a, b, name = old.get(k, "<absent>"), new.get(k, "<absent>"), f"{prefix}{k}"
        if isinstance(a, dict) and isinstance(b, dict):
            out += config_diff(a, b, f"{name}.")
        elif a != b:
            out.append(f"{name}: {a} -> {b}")
    return out


def newest_checkpoint(run_dir: Path) -> Path | None:
    """The checkpoint a continued run starts from: the newest full checkpoint of the folder (the one written at a
    stop, ``last.ckpt`` after a validation, a legacy ``hpc_ckpt_*`` of Lightning's own requeue)."""
    found = [p for p in (*run_dir.glob("hpc_ckpt_*.ckpt"), run_dir / "checkpoints" / "last.ckpt") if p.is_file()]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def has_previous_run(run_dir: Path) -> bool:
    return any((run_dir / f).exists() for f in (STATE_FILE, "done.json", "checkpoints", "config.yaml"))


def previous_config(run_dir: Path) -> dict[str, Any] | None:
    """What the folder's run was started with: run.json's config, else (a folder from before run.json) the resolved
    config.yaml without its runtime facts."""
    state = read_json(run_dir / STATE_FILE)
    if state and isinstance(state.get("config"), dict):
        return state["config"]
    cfg = run_dir / "config.yaml"
    if cfg.is_file():
        import yaml

        try:
            doc = yaml.safe_load(cfg.read_text())
        except (OSError, yaml.YAMLError):
            return None
        return doc if isinstance(doc, dict) else None
    return None


def resume_decision(run_dir: Path, config: dict[str, Any], policy: str, explicit_ckpt: bool = False) -> dict[str, Any]:
    """What a start into ``run_dir`` does: ``{"action": "new"}`` (an empty folder), ``{"action": "resume", "ckpt":
    path | None}`` (same config: continue from its newest checkpoint, or from step 0 when none was written),
    ``{"action": "finished"}`` (same config, already done: nothing to train), or ``{"action": "new_folder"}`` under
    ``resume=never``. A different config is refused, naming the keys, unless the command names the checkpoint
    itself (``ckpt_path=``: training a finished run further, with another max_steps say): then the differences are
    only recorded."""
    if policy not in ("auto", "never"):
        raise ConfigError(f"resume={policy} is not one of auto, never (auto: the same command into the same run folder "
                          f"continues it; never: start a new run folder)")
    if not has_previous_run(run_dir):
        return {"action": "new"}
    if policy == "never":
        return {"action": "new_folder"}
    old = previous_config(run_dir)
    if old is not None:
        diff = config_diff(comparable_config(old), comparable_config(config))
        if diff and explicit_ckpt:
            return {"action": "resume", "ckpt": None, "state": read_json(run_dir / STATE_FILE) or {}, "changed": diff}
        if diff:
            shown = "; ".join(diff[:6]) + (f"; and {len(diff) - 6} more" if len(diff) > 6 else "")
            raise ConfigError(f"{run_dir} holds a run with another config ({shown}): the same command continues a "
                              f"run, a changed one does not; pass resume=never for a new run folder, or another "
                              f"hydra.run.dir")
    state = read_json(run_dir / STATE_FILE) or {}
    done = read_json(run_dir / "done.json")
    if explicit_ckpt:
        return {"action": "resume", "ckpt": None, "state": state, "changed": []}
    if state.get("state") == "finished" or (done and not state):
        return {"action": "finished", "state": state or {"global_step": done.get("global_step")}}
    return {"action": "resume", "ckpt": newest_checkpoint(run_dir), "state": state}


def resume_command(run_dir: Path, argv: list[str]) -> str:
    """The command that continues this run: the same overrides, pinned to this folder."""
    import shlex

    keep = [a for a in argv[1:] if not a.startswith(("hydra.run.dir=", "resume=", "ckpt_path="))]
    prog = "python train.py" if argv and argv[0].endswith("train.py") else "compresslab train"
    return " ".join([prog, *map(shlex.quote, keep), shlex.quote(f"hydra.run.dir={run_dir}")])


class RunRecord:
    """``run.json``: the run's own state, rewritten atomically at start, at every checkpoint and at the end. Every
    start of the run (a resume, a requeued SLURM job) is a segment with its job id, start, wall time and steps."""

    def __init__(self, run_dir: Path, run_id: str, facts: dict[str, Any]):
        self.path = run_dir / STATE_FILE
        old = read_json(self.path) or {}
        self.doc: dict[str, Any] = {**old, **facts, "id": old.get("id") or run_id, "folder": run_dir.name}
        self.doc.setdefault("segments", [])
        self.t0 = time.monotonic()

    @property
    def id(self) -> str:
        return self.doc["id"]

    def start(self, from_step: int, resumed_from: str | None, changed: list[str] | None = None) -> None:
        self.doc["segments"].append({
            "started_utc": utc_now(), "host": socket.gethostname(), "pid": os.getpid(),
            "slurm_job_id": os.environ.get("SLURM_JOB_ID"), "from_step": from_step, "to_step": from_step,
            "resumed_from": resumed_from, "end": "running", "wall_s": 0.0,
            **({"config_changed": changed} if changed else {})})
        self.doc.update(state="running", reason=None, global_step=from_step)
        self.write()

    def step(self, global_step: int) -> None:
        seg = self.doc["segments"][-1]
        seg.update(to_step=global_step, wall_s=round(time.monotonic() - self.t0, 1))
        self.doc["global_step"] = global_step
        self.write()

    def end(self, state: str, global_step: int | None = None, **extra: Any) -> None:
        assert state in STATES, state
        if self.doc["segments"]:
            if global_step is not None:
                self.doc["segments"][-1]["to_step"] = global_step
            self.doc["segments"][-1].update(end=state, wall_s=round(time.monotonic() - self.t0, 1),
                                            ended_utc=utc_now())
        if global_step is not None:
            self.doc["global_step"] = global_step
        self.doc.update(state=state, **extra)
        self.write()

    def write(self) -> None:
        segs = self.doc["segments"]
        self.doc["totals"] = {"segments": len(segs), "wall_s": round(sum(s.get("wall_s") or 0 for s in segs), 1)}
        self.doc["updated_utc"] = utc_now()
        write_json_atomic(self.path, self.doc)


def mark_failed(run_dir: Path, reason: str) -> None:
    """A start that failed: its one-line reason in run.json (state failed), so `compresslab runs` shows why."""
    doc = read_json(run_dir / STATE_FILE) or {"folder": run_dir.name, "segments": []}
    doc.update(state="failed", reason=reason, updated_utc=utc_now())
    try:
        write_json_atomic(run_dir / STATE_FILE, doc)
    except OSError:
        pass  # a read-only or vanished folder: the message on screen is all there is


def check_writable(folder: Path, what: str) -> None:
    """Before any work, so a read-only or full file system is one line at the start, not a lost run at the end."""
    try:
        probe_writable(folder)
    except OSError as e:
        raise ConfigError(f"{what} {folder} is not writable ({e.strerror or e}): choose a writable folder "
                          f"(paths.output_dir=... or hydra.run.dir=...)") from None
