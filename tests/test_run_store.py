"""Runs that cannot be mixed, lost or overwritten (issue 41): an id and a lock per run folder, the same command
continues a run (or refuses, naming what changed), a signal stops training at a step boundary with a checkpoint and the
continued run has the uninterrupted run's loss at every step, one metrics file, and `compresslab runs` lists it all."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, run_py, train

FAST = ["callbacks.rd_eval.enabled=false", "callbacks.checkpoint.save_top_k=-1", "model=factorized"]
KILLER = ["+callbacks.extra.kill._target_=signal_at_step.SignalAt"]


def losses(run_dir: Path) -> dict[int, float]:
    out: dict[int, float] = {}
    for row in csv.DictReader((run_dir / "metrics.csv").open()):
        if row.get("train/loss"):
            step = int(row["step"])
            assert step not in out, f"step {step} logged twice"
            out[step] = float(row["train/loss"])
    return out


def test_a_signal_mid_step_stops_at_the_boundary_and_the_same_command_continues_exactly(tmp_path, monkeypatch):
    common = [*FAST, *KILLER, "trainer.max_steps=12"]
    full = train(tmp_path / "full", common)
    ref = losses(Path(full["run_dir"]))
    assert sorted(ref) == list(range(12))

    monkeypatch.setenv("SIGNAL_AT_STEP", "5")  # SIGINT inside step 5's backward
    first = train(tmp_path / "cut", common)
    cut = first["global_step"]  # the step that was running finished, then it stopped (5: the aux backward of step 4)
    assert first.get("interrupted") and cut in (5, 6)
    state = json.loads((tmp_path / "cut" / "run.json").read_text())
    assert state["state"] == "interrupted" and state["global_step"] == cut
    assert "hydra.run.dir=" in state["resume_command"]
    assert not (tmp_path / "cut" / "rd.json").exists() and not (tmp_path / "cut" / "done.json").exists()
    assert sorted(p.name for p in (tmp_path / "cut" / "checkpoints").glob("*.ckpt")) == ["best-4.ckpt", "last.ckpt"]

    monkeypatch.delenv("SIGNAL_AT_STEP")
    again = train(tmp_path / "cut", common)  # the same command: continues from the stop checkpoint
    assert again["global_step"] == 12 and not again.get("interrupted")
    got = losses(tmp_path / "cut")  # one metrics file, every step once
    assert got == ref
    assert not list((tmp_path / "cut").glob("metrics.part*.csv"))
    state = json.loads((tmp_path / "cut" / "run.json").read_text())
    assert state["state"] == "finished" and [(s["from_step"], s["to_step"], s["end"]) for s in state["segments"]] \
        == [(0, cut, "interrupted"), (cut, 12, "finished")]
    assert state["id"] == json.loads((tmp_path / "cut" / "run.json").read_text())["id"]

    # a third time: finished, nothing trained, nothing rewritten
    before = {p: p.read_bytes() for p in (tmp_path / "cut").rglob("*") if p.is_file()}
    third = train(tmp_path / "cut", common)
    assert third.get("already_finished") and third["global_step"] == 12
    assert {p: p.read_bytes() for p in (tmp_path / "cut").rglob("*") if p.is_file()} == before


def test_a_changed_config_into_a_run_folder_is_refused_naming_the_keys(tmp_path):
    from compresslab.errors import ConfigError

    train(tmp_path / "r", [*FAST, "trainer.max_steps=2"])
    with pytest.raises(ConfigError, match=r"seed: 42 -> 7"):
        train(tmp_path / "r", [*FAST, "trainer.max_steps=2", "seed=7"])
    res = train(tmp_path / "r", [*FAST, "trainer.max_steps=2", "seed=7", "resume=never"])
    assert Path(res["run_dir"]).parent == tmp_path and Path(res["run_dir"]).name.startswith("r-")
    assert json.loads((tmp_path / "r" / "run.json").read_text())["seed"] == 42  # the first run is untouched


def _start(tmp_path: Path, seed: int) -> subprocess.Popen:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.Popen([sys.executable, "train.py", "debug=smoke", "logger=csv", f"seed={seed}",
                             "callbacks.rd_eval.enabled=false", "trainer.max_steps=2", "threads=1",
                             f"paths.output_dir={tmp_path}/out"], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_runs_started_at_once_get_their_own_folders_and_the_index_lists_them(tmp_path):
    procs = [_start(tmp_path, seed) for seed in range(1, 9)]  # eight at once, same model and lambda
    outs = [p.communicate(timeout=900) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o, p in zip(outs, procs) if p.returncode][:1]
    folders = sorted((tmp_path / "out" / "runs").glob("*/*"))
    assert len(folders) == 8
    seeds = sorted(json.loads((f / "run.json").read_text())["seed"] for f in folders)
    assert seeds == list(range(1, 9))
    assert all(len(list((f / "checkpoints").glob("last*.ckpt"))) == 1 for f in folders)
    r = run_py(["-m", "compresslab.cli", "runs", str(tmp_path / "out"), "--where", "seed=3"])
    assert r.returncode == 0, r.stderr
    rows = r.stdout.splitlines()[1:]
    assert len(rows) == 1 and " finished " in rows[0] and " 3 " in rows[0]
    r = run_py(["-m", "compresslab.cli", "runs", str(tmp_path / "out"), "--json"])
    assert len(json.loads(r.stdout)) == 8


def test_a_held_folder_is_refused_naming_the_holder_and_a_stale_lock_is_replaced(tmp_path):
    from compresslab.training.runstore import RunLock, RunLockedError

    held = RunLock(tmp_path, "aaaaaaaa").acquire()
    code = ("import sys; from pathlib import Path; from compresslab.training.runstore import RunLock\n"
            "try:\n    RunLock(Path(sys.argv[1]), 'bbbbbbbb').acquire()\n"
            "except Exception as e:\n    print(type(e).__name__, e)")
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert r.stdout.startswith("RunLockedError") and f"pid {os.getpid()}" in r.stdout, r.stdout + r.stderr
    held.release()
    assert not (tmp_path / "run.lock").exists()
    # a lock left by a process that is gone (a pid that cannot exist here) is named and replaced
    (tmp_path / "run.lock").write_text(json.dumps({"pid": 2**22 + 17, "host": os.uname().nodename}))
    lock = RunLock(tmp_path, "cccccccc").acquire()
    assert lock.replaced and "not running" in lock.replaced
    with pytest.raises(RunLockedError):
        RunLock(tmp_path, "dddddddd").acquire()  # this process holds it now
    lock.release()


@pytest.mark.slow
def test_a_typo_key_added_with_plus_is_refused_naming_the_key_it_meant(tmp_path):
    r = run_py(["train.py", "debug=smoke", "+lamda=0.01", f"hydra.run.dir={tmp_path}/r"], timeout=180)
    assert r.returncode != 0
    last = r.stderr.strip().splitlines()[-1]
    assert "+lamda" in last and "did you mean lambda=0.01" in last, r.stderr[-2000:]
    assert not (tmp_path / "r").exists()  # a failed start leaves no folder behind


@pytest.mark.slow
def test_an_unwritable_output_folder_is_one_line_before_any_work(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")  # unwritable for root too, unlike chmod
    for args in (["train.py", "debug=smoke", f"paths.output_dir={blocker}/out"],
                 ["train.py", "-m", "debug=smoke", "lambda=0.01,0.02", f"hydra.sweep.dir={blocker}/sweep"]):
        r = run_py(args, timeout=180)
        assert r.returncode == 2, r.stderr[-2000:]
        assert "cannot be written" in r.stderr.strip().splitlines()[-1] and "Traceback" not in r.stderr
    r = run_py(["-m", "compresslab.cli", "evaluate", "nothere.ckpt", "--out", f"{blocker}/kodak.json"], timeout=120)
    assert r.returncode == 2 and "--out" in r.stderr and "Traceback" not in r.stderr, r.stderr[-2000:]


DDP = ["train.py", "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "debug=smoke", "logger=csv",
       "model=factorized", "trainer.max_steps=8", "threads=1", *FAST, *KILLER]


@pytest.mark.slow
def test_under_ddp_a_signal_to_one_rank_stops_both_at_one_step_and_the_continued_run_is_exact(tmp_path):
    """Rank 1 alone gets SIGTERM mid-step: the ranks agree at the step boundary (one all-reduce), both stop there and
    save one checkpoint, nobody hangs; the same command continues with the uninterrupted run's loss at every step."""
    tests = {"PYTHONPATH": str(REPO / "tests")}  # the ranks import the test callback
    r = run_py(DDP + [f"hydra.run.dir={tmp_path}/full"], timeout=400, env=tests)
    assert r.returncode == 0, r.stderr[-3000:]
    ref = losses(tmp_path / "full")
    cut = DDP + [f"hydra.run.dir={tmp_path}/cut", "+callbacks.extra.kill.name=SIGTERM"]
    r = run_py(cut, timeout=400, env={**tests, "SIGNAL_AT_STEP": "3", "SIGNAL_RANK": "1"})
    assert r.returncode == 130, r.stderr[-3000:]
    state = json.loads((tmp_path / "cut" / "run.json").read_text())
    assert state["state"] == "interrupted" and 3 <= state["global_step"] <= 4, state
    assert "continue with:" in r.stderr
    r = run_py(cut, timeout=400, env=tests)
    assert r.returncode == 0, r.stderr[-3000:]
    assert losses(tmp_path / "cut") == ref


@pytest.mark.slow
def test_ctrl_c_then_the_printed_command_continues_in_the_same_wandb_run(tmp_path):
    """As a user does it: Ctrl-C (SIGINT to the process) while it trains, then the command it prints."""
    import shlex
    import signal
    import time

    run_dir = tmp_path / "run"
    cmd = [sys.executable, "train.py", "debug=smoke", "logger=wandb", "callbacks.rd_eval.enabled=false",
           "trainer.max_steps=400", "trainer.val_check_interval=200", "threads=1", f"hydra.run.dir={run_dir}"]
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "WANDB_MODE": "offline"}
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    end = time.time() + 300
    while time.time() < end and not (run_dir / "metrics.csv").exists() and proc.poll() is None:
        time.sleep(0.5)  # metrics.csv appears at the first logged steps
    time.sleep(2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err[-3000:]
    state = json.loads((run_dir / "run.json").read_text())
    assert state["state"] == "interrupted" and 0 < state["global_step"] < 400
    printed = err.split("continue with:\n", 1)[1].strip().splitlines()[0]
    assert printed.startswith("python train.py ") and f"hydra.run.dir={run_dir}" in printed
    again = [sys.executable, *shlex.split(printed)[1:]]  # the printed command, our interpreter for its `python`
    r = subprocess.run(again, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    state = json.loads((run_dir / "run.json").read_text())
    assert state["state"] == "finished" and state["segments"][1]["from_step"] == state["segments"][0]["to_step"]
    assert (run_dir / "wandb_id.txt").read_text().strip() == state["id"]
    parts = sorted((run_dir / "wandb").glob("offline-run-*"))
    assert len(parts) == 2 and all(p.name.endswith(state["id"]) for p in parts)  # one W&B run, two parts
    steps = [int(r["step"]) for r in csv.DictReader((run_dir / "metrics.csv").open()) if r.get("train/loss")]
    assert steps == list(range(400))


@pytest.mark.parametrize("left, due_at_once", [("0:50", False), ("3:20", True), ("UNLIMITED", True), ("0:20", True)])
def test_an_early_time_limit_warning_is_honoured_when_the_margin_remains(tmp_path, monkeypatch, left, due_at_once):
    """SLURM may send the --signal warning up to 60 s early: a warning with the job's end (a fake squeue's %L) less
    than margin + 60 s away waits until the margin remains; further away (a pre-emption or a user's scancel
    --signal), unknown, or already within the margin, it is due at once; SIGTERM is always due at once."""
    from compresslab.training import stopping

    (tmp_path / "squeue").write_text(f"#!/bin/sh\n[ \"$*\" = \"-h -j 77 -o %L\" ] && echo {left}\n")
    (tmp_path / "squeue").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    stop = stopping.StopAtStepBoundary(str(tmp_path), ("SIGUSR1",), requeue_margin_s=30)
    assert stop._due([]) == []
    assert stop._due(["SIGUSR1"]) == ([] if not due_at_once else ["SIGUSR1"])
    assert stop._due(["SIGUSR1", "SIGTERM"]) == ["SIGUSR1", "SIGTERM"]  # the kill's SIGTERM: at once
    if not due_at_once:
        now = stopping.time.monotonic()
        monkeypatch.setattr(stopping.time, "monotonic", lambda: now + 21)  # 50 s left - 30 s margin, and a second
        assert stop._due(["SIGUSR1"]) == ["SIGUSR1"]
    assert stopping.StopAtStepBoundary(str(tmp_path), requeue_margin_s=None)._due(["SIGUSR1"]) == ["SIGUSR1"]


@pytest.mark.parametrize("before", [True, False])
def test_a_process_that_trains_nothing_ends_on_sigterm(before):
    """A sweep's submitting process (SLURM launcher) records signals from its first line like every train.py, but
    trains nothing: act_as_default makes SIGTERM end it again, also one recorded before (it had waited on forever)."""
    code = ("import os, signal, time\nfrom compresslab.training import signals\nsignals.install()\n"
            + ("os.kill(os.getpid(), signal.SIGTERM); time.sleep(0.2)\nsignals.act_as_default()\n" if before else
               "signals.act_as_default()\nos.kill(os.getpid(), signal.SIGTERM)\n")
            + "time.sleep(5)\nprint('still here')\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == -15 and "still here" not in r.stdout, (r.returncode, r.stdout, r.stderr)


def test_stops_at_two_epoch_ends_in_a_row_continue_exactly(tmp_path, monkeypatch):
    """Stopped at the end of an epoch, continued, and stopped at the end of the next one: Lightning 2.6 restores a
    checkpoint written at an epoch's last batch as 'mid-epoch' and then skips counting the next epoch's start, so the
    second stop wrote a checkpoint whose epoch counts disagree, and the run continued from it with an extra, empty
    epoch (its end-of-epoch work drew random numbers: every later loss differed). smoke: 64 images, batch 4 = 16 steps
    an epoch."""
    common = [*FAST, *KILLER, "trainer.max_steps=40", "trainer.val_check_interval=12"]
    ref = losses(Path(train(tmp_path / "full", common)["run_dir"]))
    assert sorted(ref) == list(range(40))
    for at in ("16", "32"):  # SIGINT inside step k's backward: the stop checkpoint is at step k, an epoch's end
        monkeypatch.setenv("SIGNAL_AT_STEP", at)
        res = train(tmp_path / "cut", common)
        assert res.get("interrupted") and res["global_step"] == int(at), res
    monkeypatch.delenv("SIGNAL_AT_STEP")
    assert train(tmp_path / "cut", common)["global_step"] == 40
    got = losses(tmp_path / "cut")
    first = next((k for k in sorted(ref) if got.get(k) != ref[k]), None)
    assert got == ref, f"losses differ from step {first}"
