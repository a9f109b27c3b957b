"""`compresslab reproduce`: steps run once and are skipped when their results exist, the report puts the paper's
number beside ours (read from the results' table) and never fills 'ours' from the paper."""

from pathlib import Path

import pytest

from compresslab import reproduce as rp
from compresslab.cli import main

STEP = """import sys, pathlib
out = pathlib.Path(sys.argv[1]); out.mkdir(parents=True, exist_ok=True)
(out / "rd_table.md").write_text("| curve | bd_rate_vs_base |\\n|---|---|\\n| mine | -4.25 |\\n| other | +1.00 |\\n")
(out / "count.txt").write_text(str(int((out / "count.txt").read_text()) + 1 if (out / "count.txt").exists() else 1))
"""


@pytest.fixture
def fake_paper(tmp_path, monkeypatch):
    conf = tmp_path / "conf"
    conf.mkdir()
    (tmp_path / "step.py").write_text(STEP)
    results = tmp_path / "results"
    (conf / "toy2025.yaml").write_text(f"""
title: Toy paper
profiles:
  cpu_proxy:
    scale: tiny
    results: {results}
    steps:
      - [{tmp_path / 'step.py'}, {results}]
published:
  - {{quantity: gain, value: -5.0, source: Table 1, ours: {{curve: mine, column: bd_rate_vs_base}}}}
  - {{quantity: other, value: null, source: not reported, ours: {{curve: missing, column: bd_rate_vs_base}}}}
""")
    monkeypatch.setattr(rp, "CONF", conf)
    return results


def test_steps_run_once_then_are_skipped_and_the_report_compares(fake_paper, tmp_path, monkeypatch):
    """Each reproduction writes a new folder; the published one changes only with --publish, which keeps the step
    times of the run that produced the results and refuses to replace them with 'skipped'."""
    import re

    monkeypatch.chdir(tmp_path)  # outputs/ and experiments/ of this "checkout"
    report = rp.reproduce("toy2025", "cpu_proxy")
    assert report.parent.parent == Path("outputs/reproduce/toy2025_cpu_proxy") and report.name == "report.md"
    assert (fake_paper / "count.txt").read_text() == "1"
    text = report.read_text()
    assert "| gain | -5.0 | -4.25 | +0.75 | Table 1 |" in text
    assert "| other |  | not available |  | not reported |" in text  # no paper number filled in as ours
    assert re.search(r"- ran \(\d+ s\): .*step\.py", text)  # each step with its wall time
    assert re.search(r"at commit \S+.*, steps \d+ s wall time in all;", text)
    again = rp.reproduce("toy2025", "cpu_proxy")  # a new folder; results present: the steps are not rerun
    assert again.parent != report.parent and report.read_text() == text
    assert (fake_paper / "count.txt").read_text() == "1"
    assert "skipped (results present" in again.read_text() and "no step run (results reused)" in again.read_text()
    assert not Path("experiments").exists()  # nothing published without --publish
    published = rp.reproduce("toy2025", "cpu_proxy", rerun=True, publish=True)
    assert published == Path("experiments/reproduce/toy2025_cpu_proxy/report.md")
    assert (fake_paper / "count.txt").read_text() == "2"
    steps = published.parent / "steps.json"
    measured = steps.read_bytes()
    # publishing again without running the steps keeps the producing run's times (steps.json, listed in the report)
    rp.reproduce("toy2025", "cpu_proxy", publish=True)
    assert steps.read_bytes() == measured
    assert re.search(r"## Steps of the run that produced these results \(.*\d+ s in all", published.read_text())
    assert re.search(r"- ran \(\d+ s\): .*step\.py", published.read_text())
    # a new reproduction that reuses the published results lists the same times, read from the published folder
    assert "experiments/reproduce/toy2025_cpu_proxy/steps.json" in rp.reproduce("toy2025", "cpu_proxy").read_text()
    # a published report whose measured times no steps.json keeps is not replaced by a report of skipped steps
    steps.unlink()
    before = published.read_text()
    with pytest.raises(rp.ReproduceError, match="lists the measured step times"):
        rp.reproduce("toy2025", "cpu_proxy", publish=True)
    assert published.read_text() == before


def test_an_existing_or_published_out_folder_is_refused(fake_paper, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    rp.reproduce("toy2025", "cpu_proxy", out="mine")
    assert main(["reproduce", "toy2025", "--out", "mine"]) == 2
    assert "--out mine already holds a report" in capsys.readouterr().err
    assert main(["reproduce", "toy2025", "--out", "experiments/reproduce/x"]) == 2
    err = capsys.readouterr().err
    assert "inside experiments/" in err and "--publish" in err and len(err.strip().splitlines()) == 1
    assert not Path("experiments").exists()


def test_unknown_paper_profile_and_missing_results_are_one_line(fake_paper, tmp_path, capsys):
    assert main(["reproduce", "nosuch"]) == 2
    assert "unknown paper 'nosuch'; one of: toy2025" in capsys.readouterr().err
    assert main(["reproduce", "toy2025", "--profile", "gpu"]) == 2
    assert "has no profile 'gpu'" in capsys.readouterr().err
    assert main(["reproduce", "toy2025", "--report-only", "--out", str(tmp_path / "r")]) == 2
    assert "rd_table.md is missing" in capsys.readouterr().err


def test_the_shipped_papers_list_and_ulhaq_reads_the_committed_table(tmp_path, capsys):
    assert main(["reproduce", "--list"]) == 0
    listed = capsys.readouterr().out
    assert "ulhaq2024" in listed and "zhang2022" in listed
    report = rp.reproduce("ulhaq2024", "cpu_proxy", out=str(tmp_path / "u"), report_only=True)
    table = {r["curve"]: r for r in rp.read_md_table(rp.ROOT / "experiments/adaptive/cpu_bases/rd_table.md")}
    text = report.read_text()
    assert f"| -7.1 | {table['adaptive']['bd_rate_vs_factorized']} |" in text
    assert f"| -8.33 | {table['adaptive-ideal']['bd_rate_vs_factorized']} |" in text
    assert (tmp_path / "u" / "rd.png").stat().st_size > 0


def _reproduce_from_empty_folder(tmp_path, env: dict, *args: str):
    """`compresslab reproduce …` run the way a user runs it: from a folder with no repository, an empty torch hub
    cache and the zoo served from 127.0.0.1 (``$COMPRESSLAB_ZOO_URLS``)."""
    import os
    import subprocess
    import sys

    run_env = {**os.environ, "TORCH_HOME": str(tmp_path / "torch"), "PYTHONWARNINGS": "ignore", **env}
    return subprocess.run([sys.executable, "-m", "compresslab", "reproduce", *args], cwd=tmp_path / "work",
                          capture_output=True, text=True, timeout=900, env=run_env)


@pytest.mark.slow
def test_ulhaq2024_zoo_profile_downloads_its_bases_and_runs_end_to_end_then_resumes(tmp_path, server):
    """`compresslab reproduce ulhaq2024 --profile zoo` at smoke size (two qualities, tiny stage 2): the pretrained
    bases are downloaded in the released layout and hash-checked, then the static control, stage 2 at the paper's
    (Nq, Mq, B) per quality, the ideal bound, the tables and the report; a rerun trains nothing again."""
    import json

    from omegaconf import OmegaConf

    from conftest import serve_zoo

    url, files = server
    env = {"COMPRESSLAB_ZOO_URLS": str(serve_zoo(url, files, tmp_path, "bmshj2018-factorized", [1, 2]))}
    (tmp_path / "work").mkdir()
    tiny = ["trainer.max_steps=2", "trainer.val_check_interval=2", "trainer.limit_val_batches=1",
            "data.batch_size=2", "data.max_train_images=4", "data.max_val_images=1", "data.patch_size=64",
            "data.val_patch_size=64", "callbacks.rd_eval.max_images=1", "callbacks.rd_eval.crop=64", "logger=csv",
            "model.cache_crops_per_image=1"]
    args = ["ulhaq2024", "--profile", "zoo", "--no-wandb", "--out", str(tmp_path / "report"), "--step-args",
            "--qualities", "1", "2", "--max-images", "1", "--crop", "64", "--static-train-crops", "2",
            "--stage2-overrides", *tiny]
    r = _reproduce_from_empty_folder(tmp_path, env, *args)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    assert sorted(files.hits) == sorted(set(files.hits)) and len(files.hits) == 2  # each base downloaded once
    work = tmp_path / "work" / "outputs" / "adaptive_zoo"
    base = json.loads((work / "bases" / "q2" / "rd.json").read_text())["meta"]
    assert base["checkpoint"] == "zoo:bmshj2018-factorized/mse/2" and base["source"]["url"].startswith(url)
    assert base["lambda"] == 0.0035 and base["model"] == {"name": "factorized", "N": 128, "M": 192}
    cfg = OmegaConf.load(next((work / "adaptive" / "lambda0.0035" / ".hydra").rglob("config.yaml")))  # per start
    assert (cfg.model.Nq, cfg.model.Mq, cfg.model.bins) == (32, 16, 256)  # the paper's low-rate configuration
    assert cfg.model.base_ckpt == "zoo:bmshj2018-factorized/mse/2" and cfg.name.startswith("zoo-adaptive")
    out = tmp_path / "report" / "experiments" / "adaptive" / "zoo"  # the reproduction's own folder, not the checkout's
    assert not (tmp_path / "work" / "experiments").exists()
    curves = {row["curve"] for row in rp.read_md_table(out / "rd_table.md")}
    # one image: no leave-one-out control (it needs >= 2), the driver says so and the curve is absent
    assert curves == {"factorized", "adaptive", "adaptive-ideal", "static (2 train crops)"}
    point = out / "runs" / "adaptive-lambda0.0035"  # every point of the summary, with the run's provenance
    assert json.loads((point / "rd.json").read_text())["meta"]["run_dir"] == "outputs/adaptive_zoo/adaptive/lambda0.0035"
    assert {"config.yaml", "git.json", "git.diff", "done.json"} <= {f.name for f in point.iterdir()}
    assert (out / "runs" / "static-2-train-crops-lambda0.0018" / "rd.json").is_file()
    assert (out / "runs" / "adaptive-ideal-lambda0.0018" / "rd.json").is_file()
    index = [r for r in json.loads((out / "runs" / "index.json").read_text())["runs"] if r["curve"] == "adaptive"]
    assert len(index) == 2 and all(r["wall_s"] > 0 and r["global_step"] == 2 for r in index)
    per = rp.read_md_table(out / "per_lambda.md")
    assert per[0]["lambda"] == "0.0018" and per[0]["static (2 train crops) bpp"] != "n/a"  # one column pair per control
    assert per[0]["adaptive vs static (2 train crops)"].endswith(" %") and per[-1]["lambda"] == "mean"
    assert per[-1]["adaptive vs base"].endswith(" %") and per[-1]["ideal vs base"].endswith(" %")
    assert "BD-rate, adaptive vs its frozen base" in (tmp_path / "report" / "report.md").read_text()
    stamp = (work / "adaptive" / "lambda0.0018" / "rd.json").stat().st_mtime_ns
    files.files.clear()  # cached: nothing more is downloaded
    args[args.index("--out") + 1] = str(tmp_path / "report2")  # a reproduction never writes over a report
    r = _reproduce_from_empty_folder(tmp_path, env, "--rerun", *args)
    ran = [line for line in r.stdout.splitlines() if line.startswith("$ ")]
    assert r.returncode == 0 and len(ran) == 1 and "compresslab.drivers.adaptive_repro" in ran[0], r.stdout[-2000:]
    assert (work / "adaptive" / "lambda0.0018" / "rd.json").stat().st_mtime_ns == stamp  # the driver resumed


@pytest.mark.slow
def test_zhang2022_zoo_profile_runs_lof_on_downloaded_hyperpriors_with_compressais_lambdas(tmp_path, server):
    """`compresslab reproduce zhang2022 --profile zoo` at smoke size: LOF on CompressAI's eight pretrained
    hyperpriors, downloaded from an empty cache, each at the lambda CompressAI trained it with."""
    import json

    from conftest import serve_zoo

    url, files = server
    env = {"COMPRESSLAB_ZOO_URLS": str(serve_zoo(url, files, tmp_path, "bmshj2018-hyperprior", range(1, 9)))}
    (tmp_path / "work").mkdir()
    r = _reproduce_from_empty_folder(tmp_path, env, "zhang2022", "--profile", "zoo", "--no-wandb", "--out",
                                     str(tmp_path / "report"), "--step-args", "--images", "1", "--crop", "64",
                                     "--steps", "2")
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    assert len(files.hits) == 8
    work = tmp_path / "work" / "outputs" / "lof_zoo"
    doc = json.loads((work / "zoo_bmshj2018-hyperprior_mse_2" / "lof_eval" / "lof.json").read_text())
    assert doc["meta"]["lambda"] == 0.0035 and doc["meta"]["lof"] and doc["meta"]["model"]["name"] == "hyperprior"
    results = tmp_path / "report" / "experiments" / "lof" / "zoo_hyperprior"  # in the reproduction's folder
    rows = rp.read_md_table(results / "lof_gain.md")
    assert rows[0]["model"] == "hyperprior" and rows[0]["points"] == "8"
    prov = json.loads((results / "provenance.json").read_text())
    assert prov["command"][:3] == ["python", "-m", "compresslab.drivers.lof_gain"] and "--steps" in prov["command"]
    assert prov["wall_s"] > 0 and prov["machine"]["cpu"] and len(prov["commit"]) == 40
    assert (tmp_path / "report" / "report.md").is_file()


@pytest.mark.slow
def test_dry_run_names_the_steps_and_writes_nothing(tmp_path):
    (tmp_path / "work").mkdir()
    r = _reproduce_from_empty_folder(tmp_path, {}, "ulhaq2024", "--profile", "cpu_proxy", "--dry-run")
    assert r.returncode == 0, r.stderr
    assert "step 1: would run: " in r.stdout and " -m compresslab.drivers.pipeline rd_cpu_proxy --queues factorized" in r.stdout
    assert "nothing ran, nothing was written" in r.stdout
    assert not any((tmp_path / "work").iterdir())


def test_report_embeds_the_papers_other_figures_and_logs_to_wandb_offline(fake_paper, tmp_path, monkeypatch):
    import glob

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig_png = tmp_path / "speed.png"
    plt.figure()
    plt.plot([1, 2], [3, 4])
    plt.savefig(fig_png)
    plt.savefig(fig_png.with_suffix(".pdf"))
    conf = rp.CONF / "toy2025.yaml"
    conf.write_text(conf.read_text() + f"""figures:
  - {{caption: "Decode time vs size", path: {fig_png}, how: run the benchmark}}
  - {{caption: "LOF gain", path: {tmp_path / 'missing.png'}, how: run lof_gain.py}}
""")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wb"))
    monkeypatch.setenv("WANDB_MODE", "offline")
    report = rp.reproduce("toy2025", "cpu_proxy", out=str(tmp_path / "rep"), log_wandb=True)
    text = report.read_text()
    assert "![Decode time vs size](speed.png)" in text and "[PDF](speed.pdf)" in text
    assert (tmp_path / "rep" / "speed.pdf").exists()
    assert "LOF gain: not available yet" in text and "run lof_gain.py" in text  # never a silent gap
    tables = glob.glob(str(tmp_path / "wb" / "wandb" / "offline-run-*" / "files" / "media" / "table" / "*.json"))
    images = glob.glob(str(tmp_path / "wb" / "wandb" / "offline-run-*" / "files" / "media" / "images" / "*.png"))
    assert tables and images
    import json

    data = json.loads(open(tables[0]).read())["data"]
    assert ["gain", "-5.0", "-4.25", "Table 1"] in data


def test_a_report_calls_the_tree_dirty_only_for_changes_outside_the_results_it_wrote():
    c = "0123456789abcdef"
    assert rp.commit_state({"commit": c, "status": ""}) == "0123456789"
    results = " M experiments/rd_cpu_proxy/summary.json\n?? experiments/adaptive/cpu_bases/runs/\n"
    assert rp.commit_state({"commit": c, "status": results}) == "0123456789 (its results in experiments/ not yet committed)"
    code = results + " M src/compresslab/reproduce.py\n"
    assert rp.commit_state({"commit": c, "status": code}) == \
        "0123456789 (dirty tree: uncommitted changes to src/compresslab/reproduce.py)"
