"""Commands never rewrite committed results (issue 41, item 4): the documented `compresslab reproduce` and
`compresslab pipeline` commands, run as a user runs them inside a fresh git clone, leave `git status` clean (their
results go to a new outputs/…/<id>/ folder, which git ignores); `--publish` changes only the published folder it
names and refuses to replace measured step times with "skipped"."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Path:
    """A clone of the committed tree (hard links: fast), where the installed package runs with its own configs."""
    where = tmp_path_factory.mktemp("clone") / "repo"
    subprocess.run(["git", "clone", "--quiet", "--local", "--no-hardlinks", str(REPO), str(where)], check=True)
    return where


def _cli(clone: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "WANDB_MODE": "offline"}
    return subprocess.run([sys.executable, "-m", "compresslab", *args], cwd=clone, env=env, capture_output=True,
                          text=True, timeout=600)


def _status(clone: Path) -> list[str]:
    out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=clone, capture_output=True,
                         text=True, check=True).stdout
    return [line[3:] for line in out.splitlines()]


@pytest.mark.parametrize("paper", ["ulhaq2024", "zhang2022"])
def test_the_documented_reproduce_command_leaves_git_status_clean(clone, paper):
    """docs/reproductions.md's `compresslab reproduce <paper> --profile cpu_proxy`: the committed results are read
    (its steps are skipped), the report goes to a new folder under outputs/, the committed report is untouched."""
    r = _cli(clone, "reproduce", paper, "--profile", "cpu_proxy", "--no-wandb")
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    report = Path(r.stdout.strip().splitlines()[-1].removeprefix("report: "))
    assert report.parts[:3] == ("outputs", "reproduce", f"{paper}_cpu_proxy") and (clone / report).is_file()
    assert _status(clone) == []
    again = _cli(clone, "reproduce", paper, "--profile", "cpu_proxy", "--no-wandb")  # twice: a second new folder
    assert again.returncode == 0 and again.stdout.strip().splitlines()[-1] != r.stdout.strip().splitlines()[-1]
    assert _status(clone) == []


def test_publish_refuses_to_replace_measured_step_times_with_skipped(clone):
    """The audited case: ulhaq2024's committed report lists the steps' measured times (ran (37 min 56 s) …);
    publishing a report whose steps were skipped would have replaced them."""
    before = (clone / "experiments/reproduce/ulhaq2024_cpu_proxy/report.md").read_bytes()
    r = _cli(clone, "reproduce", "ulhaq2024", "--profile", "cpu_proxy", "--publish", "--no-wandb")
    assert r.returncode == 2 and "lists the measured step times" in r.stderr, r.stderr[-2000:]
    assert len(r.stderr.strip().splitlines()) == 1
    assert (clone / "experiments/reproduce/ulhaq2024_cpu_proxy/report.md").read_bytes() == before
    assert _status(clone) == []


def test_publish_changes_only_the_published_report_folder(clone):
    r = _cli(clone, "reproduce", "zhang2022", "--profile", "cpu_proxy", "--report-only", "--publish", "--no-wandb")
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    changed = _status(clone)
    assert changed and all(p.startswith("experiments/reproduce/zhang2022_cpu_proxy/") for p in changed), changed
    assert "experiments/reproduce/zhang2022_cpu_proxy/report.html" in changed  # its page, beside report.md
    subprocess.run(["git", "checkout", "--quiet", "--", "experiments"], cwd=clone, check=True)
    subprocess.run(["git", "clean", "--quiet", "-fd", "--", "experiments"], cwd=clone, check=True)  # the new page


def _finished_runs(work: Path) -> None:
    """Finished runs of rd_cpu_proxy's sweep stage (the committed points, as the training callback writes them)."""
    for src in sorted((REPO / "experiments/rd_cpu_proxy/runs").glob("*-lambda*/rd.json")):
        model = json.loads(src.read_text())["meta"]["model"]["name"]
        run = work / model / "sweep" / src.parent.name
        run.mkdir(parents=True)
        (run / "rd.json").write_text(src.read_text())
        (run / "done.json").write_text(json.dumps({"global_step": 3000, "wall_s": 412.5}))


@pytest.mark.slow
def test_the_pipeline_writes_a_new_folder_and_publishes_only_with_publish(clone, tmp_path):
    """`compresslab pipeline rd_cpu_proxy --publish-only` (no training: the cheapest real mode, `compresslab rd` over
    finished runs) writes a new outputs/pipeline/rd_cpu_proxy/<id>/; only --publish touches experiments/rd_cpu_proxy,
    and an --out inside experiments/ without it is refused in one line."""
    work = tmp_path / "work"
    _finished_runs(work)
    r = _cli(clone, "pipeline", "rd_cpu_proxy", "--publish-only", "--work", str(work))
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    out = Path(r.stdout.strip().splitlines()[-1].removeprefix("results: "))
    assert out.parts[:3] == ("outputs", "pipeline", "rd_cpu_proxy") and (clone / out / "rd_table.md").is_file()
    assert _status(clone) == []
    r = _cli(clone, "pipeline", "rd_cpu_proxy", "--publish-only", "--work", str(work), "--out", "experiments/x")
    assert r.returncode != 0 and "only with --publish" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = _cli(clone, "pipeline", "rd_cpu_proxy", "--publish-only", "--publish", "--work", str(work))
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    changed = _status(clone)
    assert changed and all(p.startswith("experiments/rd_cpu_proxy/") for p in changed), changed
    subprocess.run(["git", "checkout", "--quiet", "--", "experiments"], cwd=clone, check=True)
    subprocess.run(["git", "clean", "--quiet", "-fd", "--", "experiments"], cwd=clone, check=True)


@pytest.mark.parametrize("driver,args", [
    ("lof_gain", ["zoo:bmshj2018-hyperprior/mse/1", "--out", "experiments/lof/cpu_proxy"]),
    ("adaptive_repro", ["--profile", "zoo", "--out", "experiments/adaptive/zoo"]),
    ("decode_speed", ["--sizes", "64x64", "--out", "benchmarks/results/x.txt"]),
    ("plot_decode_speed", ["--out", "benchmarks/results/decode_speed_vs_size"]),
    ("adaptive_static_control", ["--base-sweep", "outputs/none", "--work", "experiments/adaptive/cpu_bases"]),
])
def test_a_driver_refuses_a_published_folder_without_publish_before_any_work(clone, driver, args):
    r = subprocess.run([sys.executable, "-m", f"compresslab.drivers.{driver}", *args], cwd=clone, capture_output=True,
                       text=True, timeout=300, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    err = r.stderr.strip().splitlines()
    assert r.returncode != 0 and len(err) == 1 and "only with --publish" in err[0], r.stderr[-2000:]
    assert _status(clone) == []
