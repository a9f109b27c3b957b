"""report.html where users already are (issue 39, item 3): beside a sweep's rd_summary (after every job), a
reproduction's report.md and a pipeline's rd_table.md; a page that fails costs one log line, never the summary. And
the committed pages of experiments/rd_cpu_ctx and experiments/adaptive/cpu_bases: what their documented command
writes, loading the one committed plotly.js, and drawn in Chromium (screenshot against DOM)."""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
import shutil
import subprocess
import sys

import pytest

from conftest import REPO, require_data, run_py
from report_browser import assert_drawn, browser, open_offline  # noqa: F401 (browser: a fixture)

COMMITTED = ("experiments/rd_cpu_ctx", "experiments/adaptive/cpu_bases")


def rd_points(page, n_ours: int) -> list[tuple[float, float]]:
    traces = page.evaluate("Array.from(document.getElementById('rd-plot').data, t => [t.x, t.y])")
    return sorted((x, y) for xs, ys in traces[:n_ours] for x, y in zip(xs, ys))


def file_points(rd_files) -> list[tuple[float, float]]:
    docs = [json.loads(f.read_text()) for f in rd_files]
    return sorted((d["results"]["bpp"][0], d["results"]["psnr-rgb"][0]) for d in docs)


@pytest.mark.slow
def test_a_smoke_lambda_sweep_ends_with_its_page_beside_the_summary(browser, tmp_path):
    """`train.py -m lambda=a,b` as a user types it (W&B offline, the default logger): rd_summary/report.html holds
    exactly the sweep's points, draws them, and the W&B report run holds the same page."""
    require_data()
    sweep = tmp_path / "sweep"
    r = run_py(["train.py", "-m", "model=factorized", "lambda=0.0067,0.013", "debug=smoke", "trainer.max_steps=2",
                "trainer.val_check_interval=2", "callbacks.rd_eval.max_images=1", f"hydra.sweep.dir={sweep}"],
               timeout=400)
    assert r.returncode == 0, r.stderr[-3000:]
    assert re.search(r"sweep RD summary \(2 runs\): \S+/rd_table\.md, rd\.png, report\.html", r.stdout), r.stdout
    page_file = sweep / "rd_summary" / "report.html"
    assert (sweep / "rd_summary" / "rd_table.md").is_file() and page_file.is_file()
    page, errors, refused = open_offline(browser, page_file)
    assert assert_drawn(page, "rd-plot")[0] == "factorized"
    assert rd_points(page, 1) == file_points(sorted(sweep.glob("*/rd.json")))
    assert page.locator("details.per-image").count() == 2
    assert errors == [] and refused == [], (errors, refused)
    page.close()
    (logged,) = (sweep / "rd_summary" / "wandb").glob("offline-run-*/files/media/html/report_*.html")
    assert logged.read_text() == page_file.read_text()


def test_a_failing_page_costs_one_line_and_never_the_summary(tmp_path, caplog):
    """The sweep hook (write_summary's html_report, as conf/train.yaml injects it): a page that raises is one
    warning, the Markdown summary is written all the same; the real writer puts the page beside it."""
    from compresslab.reporting.beside import sweep_page
    from compresslab.sweeps.hydra_callbacks import write_summary

    sweep = tmp_path / "sweep"
    for i, name in enumerate(("factorized-lambda0.0009", "factorized-lambda0.0018")):
        (sweep / f"{i}_run").mkdir(parents=True)
        shutil.copy(REPO / "experiments/rd_cpu_ctx/runs" / name / "rd.json", sweep / f"{i}_run" / "rd.json")

    def broken(sweep_dir, summary_dir, log_wandb=False):
        raise OSError("disk full")

    with caplog.at_level(logging.WARNING):
        assert write_summary(sweep, quiet=True, html_report=broken) == sweep / "rd_summary"
    assert (sweep / "rd_summary" / "rd_table.md").is_file() and not (sweep / "rd_summary" / "report.html").exists()
    (line,) = [r.getMessage() for r in caplog.records if "report.html" in r.getMessage()]
    assert "not written" in line and "disk full" in line
    assert write_summary(sweep, quiet=True, html_report=sweep_page) == sweep / "rd_summary"
    text = (sweep / "rd_summary" / "report.html").read_text()
    assert "<title>Sweep sweep</title>" in text and "0_run/rd.json" in text and "1_run/rd.json" in text


def test_the_conf_hands_the_sweep_callback_its_page_writer():
    """conf/train.yaml injects reporting.beside.sweep_page into the callback (and the SLURM launcher reads the same
    key); `hydra.callbacks.rd_summary.html_report=null` turns the page off."""
    from hydra import compose, initialize_config_module
    from hydra.utils import instantiate

    from compresslab.reporting.beside import sweep_page
    from compresslab.sweeps.hydra_callbacks import html_report_from

    with initialize_config_module(version_base="1.3", config_module="compresslab.conf"):
        cfg = compose("train", return_hydra_config=True)
        off = compose("train", overrides=["hydra.callbacks.rd_summary.html_report=null"], return_hydra_config=True)
    assert instantiate(cfg.hydra.callbacks.rd_summary).html_report.func is sweep_page
    assert html_report_from(cfg).func is sweep_page
    assert html_report_from(off) is None and instantiate(off.hydra.callbacks.rd_summary).html_report is None


@pytest.mark.slow
def test_reproduce_and_pipeline_write_their_page_beside_the_markdown(browser, tmp_path):
    """`compresslab reproduce --report-only` and `compresslab pipeline --publish-only` (the cheap real paths)."""
    require_data()
    r = run_py(["-m", "compresslab", "reproduce", "zhang2022", "--profile", "cpu_proxy", "--report-only", "--out",
                str(tmp_path / "repro"), "--no-wandb"])
    assert r.returncode == 0, r.stderr[-3000:]
    assert (tmp_path / "repro" / "report.md").is_file()
    page, errors, refused = open_offline(browser, tmp_path / "repro" / "report.html")
    assert page.locator("#reproduction-0 table.reproduction").count() == 1  # report.md beside the RD curves
    published = sorted((REPO / "experiments/rd_cpu_ctx/runs").glob("*/rd.json"))
    curves = {f.parent.name.rsplit("-lambda", 1)[0] for f in published}  # one trace per published curve
    assert rd_points(page, len(curves)) == file_points(published)
    assert_drawn(page, "rd-plot")
    assert errors == [] and refused == [], (errors, refused)
    page.close()
    dry = run_py(["-m", "compresslab", "reproduce", "zhang2022", "--profile", "cpu_proxy", "--dry-run", "--report-only"])
    assert "report.html" in dry.stdout, dry.stdout

    work = tmp_path / "work"  # finished runs of rd_cpu_ctx's published stage, as the training callback leaves them
    for src in sorted((REPO / "experiments/rd_cpu_ctx/runs").glob("factorized-lambda*/rd.json")):
        (work / "factorized" / "sweep" / src.parent.name).mkdir(parents=True)
        shutil.copy(src, work / "factorized" / "sweep" / src.parent.name / "rd.json")
    out = tmp_path / "pipeline"
    r = run_py(["-m", "compresslab", "pipeline", "rd_cpu_ctx", "--queues", "factorized", "--publish-only", "--work",
                str(work), "--out", str(out)])
    assert r.returncode == 0, r.stderr[-3000:]
    assert (out / "rd_table.md").is_file()
    page, errors, refused = open_offline(browser, out / "report.html")
    assert assert_drawn(page, "rd-plot")[0] == "factorized"
    assert rd_points(page, 1) == file_points(sorted(work.glob("factorized/sweep/*/rd.json")))
    assert page.locator("table.bd-matrix").count() == 2  # PSNR and MS-SSIM
    assert errors == [] and refused == [], (errors, refused)
    page.close()


def script():
    """scripts/committed_reports.py, the one place that names the committed pages and their commands."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("committed_reports", REPO / "scripts" / "committed_reports.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.slow
def test_committed_pages_are_what_their_documented_command_writes(tmp_path):
    cmds = script().commands()
    assert [c[c.index("-o") + 1] for c in cmds] == [f"{d}/report.html" for d in COMMITTED]
    block = re.search(r"## Committed reports.*?<!-- docs-test: check -->\n```bash\n(.*?)```",
                      (REPO / "docs" / "report.md").read_text(), re.S).group(1)
    assert [shlex.split(line) for line in block.splitlines()] == cmds  # the docs show the script's commands
    record = json.loads((REPO / script().RECORD).read_text())
    for entry in record["pages"]:  # the sizes the docs show are the committed files'
        assert entry["kilobytes"] == round((REPO / entry["page"]).stat().st_size / 1e3, 1), entry
    for d in COMMITTED:  # the committed inputs, at the same relative paths (the pages name them)
        shutil.copytree(REPO / d / "runs", tmp_path / d / "runs")
    for cmd in cmds:
        r = subprocess.run([sys.executable, "-m", "compresslab", *cmd[1:]], cwd=tmp_path, capture_output=True,
                           text=True, timeout=300, env={**os.environ, "PYTHONWARNINGS": "ignore"})
        assert r.returncode == 0, r.stderr[-2000:]
        out = cmd[cmd.index("-o") + 1]
        assert (tmp_path / out).read_bytes() == (REPO / out).read_bytes(), \
            f"{out} is not what its command writes: rerun scripts/committed_reports.py"
    (js,) = (tmp_path / "experiments" / "report_assets").iterdir()
    assert js.read_bytes() == (REPO / record["plotly_js"]["path"]).read_bytes()


@pytest.mark.slow
@pytest.mark.parametrize("folder", COMMITTED)
def test_committed_page_draws_every_point_offline(browser, folder):
    """Opened where it is committed (plotly.js by relative path, network off): every rd.json's point drawn."""
    page, errors, refused = open_offline(browser, REPO / folder / "report.html")
    rd_files = sorted((REPO / folder / "runs").glob("*/rd.json"))
    names = assert_drawn(page, "rd-plot")
    assert "kodak/vtm" in names
    assert sorted(p for p in rd_points(page, len(names)) if p in file_points(rd_files)) == file_points(rd_files)
    assert errors == [] and refused == [], (errors, refused)
    # the screenshot check is not a formality: the same page with its curves hidden by CSS fails it
    page.add_style_tag(content="#rd-plot .scatterlayer { visibility: hidden }")
    with pytest.raises(AssertionError, match="not drawn|blank"):
        assert_drawn(page, "rd-plot")
    page.close()


def test_shared_js_is_written_once_and_a_foreign_copy_refused(tmp_path):
    """--shared-js DIR: the page loads DIR/plotly-<version>.min.js by relative path (written if absent); a file of
    that name that is not the installed plotly.js is refused in one line, and no page is written."""
    runs = REPO / "experiments" / "rd_cpu_ctx" / "runs" / "msp-lambda0.0067"
    (tmp_path / "pages").mkdir()
    r = run_py(["-m", "compresslab", "report", str(runs), "-o", str(tmp_path / "pages" / "a.html"), "--shared-js",
                str(tmp_path / "js")])
    assert r.returncode == 0, r.stderr
    (js,) = (tmp_path / "js").iterdir()
    assert re.fullmatch(r"plotly-[\d.]+\.min\.js", js.name) and f"plotly.js from ../js/{js.name}" in r.stdout
    text = (tmp_path / "pages" / "a.html").read_text()
    assert f'src="../js/{js.name}"' in text and len(text) < js.stat().st_size / 10  # the script is not inlined
    js.write_text("/* not plotly */")
    r = run_py(["-m", "compresslab", "report", str(runs), "-o", str(tmp_path / "b.html"), "--shared-js",
                str(tmp_path / "js")])
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "is not plotly.js" in r.stderr, r.stderr
    r = run_py(["-m", "compresslab", "report", str(runs), "-o", str(tmp_path / "c.html"), "--shared-js",
                str(tmp_path / "no" / "js")])
    assert r.returncode == 2 and "does not exist" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "b.html").exists() and not (tmp_path / "c.html").exists()
