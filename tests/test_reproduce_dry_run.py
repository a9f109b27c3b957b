"""`compresslab reproduce <paper> --dry-run` (issue 30): for every shipped paper and profile, wherever --dry-run sits
on the command line, it runs nothing, writes nothing (every file of the checkout and the --out folder compared
before and after), starts no W&B run, and names each step with its command; a missing result is explained by what
the user actually ran."""

import hashlib
import os
import types
from pathlib import Path

import pytest

from compresslab import reproduce as rp
from compresslab.cli import main

REPO = Path(__file__).resolve().parents[1]


def snapshot(*roots: Path) -> dict[str, tuple[int, str]]:
    out = {}
    for root in roots:
        if not root.exists():
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            # not the virtual environment a checkout may hold (gigabytes, never written by a run) nor caches;
            # outputs/ (where runs write) and everything tracked are compared
            dirnames[:] = [d for d in dirnames if d not in (".git", "__pycache__", ".pytest_cache", ".venv",
                                                             ".venv-lowest", "site") and not d.endswith(".egg-info")]
            out[dirpath] = (0, "dir")
            for name in filenames:
                f = Path(dirpath) / name
                out[str(f)] = (f.stat().st_mtime_ns, hashlib.sha256(f.read_bytes()).hexdigest())
    return out


@pytest.fixture
def no_side_effects(monkeypatch):
    """Anything that would run a step or start W&B fails the test."""
    import wandb

    def forbidden(*a, **k):
        raise AssertionError("a dry run must not run steps or start W&B")

    monkeypatch.setattr(rp, "subprocess", types.SimpleNamespace(run=forbidden))  # reproduce's own, nobody else's
    monkeypatch.setattr(wandb, "init", forbidden)
    monkeypatch.setattr(rp, "_log_to_wandb", forbidden)
    monkeypatch.chdir(REPO)  # reproduce's paths are relative to where it runs: a clone's root


CASES = [(paper, profile) for paper, doc in rp.papers().items() for profile in doc["profiles"]]


@pytest.mark.parametrize("paper,profile", CASES)
@pytest.mark.parametrize("where", ["before", "after --step-args", "with --report-only", "with --rerun"])
def test_dry_run_writes_nothing_starts_no_wandb_and_names_every_step(paper, profile, where, tmp_path, capsys,
                                                                      no_side_effects):
    out = tmp_path / "report"
    args = ["reproduce", paper, "--profile", profile, "--out", str(out)]
    args += {"before": ["--dry-run"], "after --step-args": ["--step-args", "--max-images", "1", "--dry-run"],
             "with --report-only": ["--dry-run", "--report-only"], "with --rerun": ["--dry-run", "--rerun"]}[where]
    before = snapshot(REPO, tmp_path)
    assert main(args) == 0
    printed = capsys.readouterr()
    assert snapshot(REPO, tmp_path) == before and not out.exists()
    text = printed.out
    assert "nothing ran, nothing was written, no W&B run was started" in text and not printed.err
    cfg = rp.papers()[paper]["profiles"][profile]
    table = f"{cfg['results']}/{cfg.get('table', 'rd_table.md')}"
    present = (REPO / table).exists()
    if where == "with --report-only":
        assert "steps: none (--report-only)" in text
    else:
        for i, step in enumerate(cfg["steps"], 1):  # each step, numbered, with its full command
            command = " ".join(rp.step_argv(step, out, ["--max-images", "1"] if where == "after --step-args" else []))
            verb = "would skip (results present" if present and where != "with --rerun" else "would run:"
            line = next(entry for entry in text.splitlines() if entry.startswith(f"step {i}: "))
            assert verb in line and line.endswith(command) and " -m " in line, line
    if where == "with --report-only" and not present:
        assert f"would stop: {table} is missing: the profile's steps have not run here" in text
    else:
        assert f"would write the report {out / 'report.md'}" in text
        assert "would log the report to W&B" in text
    if where == "after --step-args":
        assert "taken as reproduce's own --dry-run" in text
        assert not any("--dry-run" in entry for entry in text.splitlines() if entry.startswith("step "))
    assert "without --report-only" not in text


def test_the_default_report_folder_is_not_rewritten_by_a_dry_run(capsys, no_side_effects):
    """The audited case: --dry-run after --step-args (where argparse's remainder used to swallow it and the run was
    real). The default report folder is a new one under outputs/ (a dry run only names it); --publish names the
    published one."""
    before = snapshot(REPO / "experiments", REPO / "outputs")
    for paper in rp.papers():
        assert main(["reproduce", paper, "--step-args", "--max-images", "1", "--dry-run"]) == 0
        assert f"would write the report outputs/reproduce/{paper}_cpu_proxy/<new run id>/report.md" in capsys.readouterr().out
        assert main(["reproduce", paper, "--publish", "--dry-run"]) == 0
        assert f"would write the report experiments/reproduce/{paper}_cpu_proxy/report.md" in capsys.readouterr().out
    assert snapshot(REPO / "experiments", REPO / "outputs") == before


def test_reproduces_own_flags_after_step_args_are_refused_in_one_line(capsys, no_side_effects):
    assert main(["reproduce", "ulhaq2024", "--step-args", "--max-images", "1", "--rerun"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--rerun came after --step-args" in err and len(err.splitlines()) == 1


SILENT = "import sys\n"  # a step that exits 0 and writes nothing


def test_a_missing_result_names_the_real_cause(tmp_path, monkeypatch, capsys):
    conf = tmp_path / "conf"
    conf.mkdir()
    (tmp_path / "step.py").write_text(SILENT)
    (conf / "toy2025.yaml").write_text(f"""
title: Toy paper
profiles:
  zoo:
    scale: tiny
    results: {tmp_path / 'results'}
    steps:
      - [{tmp_path / 'step.py'}]
published: []
""")
    monkeypatch.setattr(rp, "CONF", conf)
    assert main(["reproduce", "toy2025", "--profile", "zoo", "--no-wandb", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "the steps finished but" in err and "rd_table.md was not written" in err
    assert "--report-only" not in err  # never the advice to drop a flag the user did not pass
    assert main(["reproduce", "toy2025", "--profile", "zoo", "--report-only", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "rd_table.md is missing: the profile's steps have not run here" in err
    assert "`compresslab reproduce toy2025 --profile zoo`" in err
    assert not (tmp_path / "r").exists()
