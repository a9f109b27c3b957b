"""`compresslab report`: the HTML page opened in a real browser (Debian's headless Chromium driven by Playwright),
with every request but file:// refused, so a page that needs the network shows it. Built from the published runs
of experiments/rd_cpu_ctx, a committed Optuna sweep and a smoke training run, as a user runs the command."""

from __future__ import annotations

import csv
import html
import json
import re
import shutil
from pathlib import Path

import pytest

from conftest import REPO, require_data, run_py
from report_browser import assert_drawn, browser, open_offline  # noqa: F401 (browser: a fixture)

RUNS = REPO / "experiments" / "rd_cpu_ctx" / "runs"
SWEEP = REPO / "experiments" / "search" / "quickstart_lr_warmup_pruned_other_draws"
REPRO = REPO / "experiments" / "reproduce" / "zhang2022_cpu_proxy"
# the anchors a Kodak RD figure shows beside our curves (the BD anchor first, then the dashed context curves)
ANCHORS = ("kodak/vtm", "kodak/hm", "kodak/jpeg", "kodak/compressai-bmshj2018-factorized_mse_cpu",
           "kodak/compressai-bmshj2018-hyperprior_mse_cpu")


def report(*args: str, cwd: Path | None = None):
    return run_py(["-m", "compresslab", "report", *args], timeout=300, **({"cwd": cwd} if cwd else {}))


def one_line_error(r, *words: str) -> None:
    assert r.returncode == 2, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("compresslab report: error:"), r.stderr
    for w in words:
        assert w in lines[0], lines[0]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory) -> Path:
    """One `debug=smoke logger=csv` training run, as a user starts it: its folder (rd.json, metrics.csv,
    checkpoints)."""
    require_data()
    out = tmp_path_factory.mktemp("smoke")
    r = run_py(["-m", "compresslab", "train", "debug=smoke", "logger=csv", f"paths.output_dir={out}"])
    assert r.returncode == 0, r.stderr[-2000:]
    (metrics,) = out.rglob("metrics.csv")
    return metrics.parent


@pytest.fixture(scope="module")
def ctx_report(tmp_path_factory) -> Path:
    require_data()
    out = tmp_path_factory.mktemp("report") / "report.html"
    r = report(str(RUNS), "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert re.match(rf"wrote {re.escape(str(out))} \([\d.]+ MB, self-contained\) in [\d.]+ s: RD curves, "
                    r"BD-rate matrix, Per-image results", r.stdout), r.stdout
    return out


@pytest.mark.slow
def test_rd_page_renders_offline_with_every_point_and_switches_metric(browser, ctx_report):
    page, errors, refused = open_offline(browser, ctx_report)
    page.wait_for_selector("#rd-plot .plotly .main-svg")
    files = sorted(RUNS.glob("*/rd.json"))
    docs = [json.loads(f.read_text()) for f in files]
    models = {d["meta"]["model"]["name"] for d in docs}
    assert len(models) >= 3  # the study's curves, however many it publishes
    assert len(assert_drawn(page, "rd-plot")) == len(models) + len(ANCHORS)  # what Chromium drew is the page's data
    traces = page.evaluate("Array.from(document.getElementById('rd-plot').data, t => [t.name, t.x, t.y])")
    assert len(traces) == len(models) + len(ANCHORS)
    assert [t[0] for t in traces[len(models):]] == list(ANCHORS)
    ours = sorted((x, y) for name, xs, ys in traces[:len(models)] for x, y in zip(xs, ys))
    assert ours == sorted((d["results"]["bpp"][0], d["results"]["psnr-rgb"][0]) for d in docs)  # exactly the files
    hover = page.evaluate("document.getElementById('rd-plot').data[0].customdata[0]")
    assert hover[0].endswith(("lambda0.0009", "lambda0.0018")) and hover[1] in ("0.0009", "0.0018"), hover

    # each curve's BD band with kodak/vtm shaded; the VTM points inside a band drawn larger, and only those
    bands = page.evaluate("document.getElementById('rd-plot').layout.shapes.map(s => [s.name, s.y0, s.y1])")
    assert sorted(b[0] for b in bands) == sorted(f"BD band {m}" for m in models)
    vtm = page.evaluate(f"(() => {{ const t = document.getElementById('rd-plot').data[{len(models)}]; "
                        "return [t.y, t.marker.size]; })()")
    inside = [any(lo - 0.005 <= y <= hi + 0.005 for _, lo, hi in bands) for y in vtm[0]]
    assert [s == 9 for s in vtm[1]] == inside and any(inside)
    title = page.locator("#rd-plot .ytitle")
    assert title.text_content().startswith("PSNR-RGB (dB)")
    page.locator("#rd-plot .updatemenu-button").nth(1).click()
    page.wait_for_function("document.querySelector('#rd-plot .ytitle').textContent.startsWith('MS-SSIM')")
    ys = page.evaluate("document.getElementById('rd-plot').data[0].y")
    first = traces[0][0]
    want = sorted(d["results"]["ms-ssim-db-rgb"][0] for d in docs if d["meta"]["model"]["name"] == first)
    assert sorted(ys) == pytest.approx(want)
    assert page.locator("details.per-image").count() == len(files)
    assert page.locator("details.per-image[open]").count() == 0
    # a real mouse click on the second point of the first curve opens that run's per-image table
    x, y = page.evaluate("""() => { const gd = document.getElementById('rd-plot'), L = gd._fullLayout;
        const r = gd.getBoundingClientRect(), t = gd.data[0];
        return [r.left + L.xaxis._offset + L.xaxis.l2p(t.x[1]), r.top + L.yaxis._offset + L.yaxis.l2p(t.y[1])]; }""")
    page.mouse.move(x, y)
    page.mouse.click(x, y)
    clicked = page.evaluate("document.getElementById('rd-plot').data[0].customdata[1][5]")
    page.wait_for_selector("details.per-image[open]")
    assert page.locator("details.per-image[open]").get_attribute("data-file") == clicked
    assert errors == [] and refused == [], (errors, refused)
    page.close()


@pytest.mark.slow
def test_bd_matrix_holds_the_numbers_compresslab_rd_prints(ctx_report, tmp_path):
    r = run_py(["-m", "compresslab", "rd", str(RUNS), "--out", str(tmp_path / "rd")])
    assert r.returncode == 0, r.stderr
    with (tmp_path / "rd" / "rd_table.csv").open() as f:
        rows = {row["curve"]: row for row in csv.DictReader(f)}
    text = ctx_report.read_text()
    table = re.search(r'<table class="bd-matrix" data-metric="psnr-rgb">.*?</table>', text, re.S).group(0)
    cells = {(html.unescape(c), html.unescape(ref)): html.unescape(v) for c, ref, v in
             re.findall(r'data-curve="([^"]+)" data-ref="([^"]+)" title="[^"]*">([^<]*)</td>', table)}
    assert {c for c, _ in cells} == set(rows)
    for curve, row in rows.items():
        vtm = cells[(curve, "kodak/vtm")]
        if row["bd_rate_vs_kodak/vtm"]:
            assert vtm.startswith(f"{float(row['bd_rate_vs_kodak/vtm']):+.2f} %"), (curve, vtm)
            assert f"{row['anchor_points_in_overlap']} anchor pts in band" in vtm
        else:
            assert vtm.startswith("refused: "), (curve, vtm)
    # and one cell against the raw bjontegaard package (Akima), an implementation that is not ours
    import bjontegaard

    def curve(model):
        pts = sorted((d["results"]["bpp"][0], d["results"]["psnr-rgb"][0]) for d in
                     (json.loads(f.read_text()) for f in RUNS.glob(f"{model}-lambda*/rd.json")))
        return [p[0] for p in pts], [p[1] for p in pts]

    raw = bjontegaard.bd_rate(*curve("factorized"), *curve("hyperprior"), method="akima")
    assert cells[("hyperprior", "factorized")] == f"{raw:+.2f} %"
    for line in r.stdout.splitlines()[:-1]:  # `rd` prints one line per curve, then where it wrote
        assert html.escape(line) in text, line


@pytest.mark.slow
def test_sweep_study_training_and_live_sections(browser, smoke_run, tmp_path):
    sweep = shutil.copytree(SWEEP, tmp_path / SWEEP.name)  # Optuna opens its database: never the committed one
    metrics = smoke_run / "metrics.csv"
    out = tmp_path / "sweep.html"
    r = report(str(sweep), str(metrics.parent), f"sqlite:///{sweep / 'optuna.db'}", "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert "Training curves, Live RD trajectory, Optuna study" in r.stdout, r.stdout
    page, errors, refused = open_offline(browser, out)
    page.wait_for_selector("#training-plot .main-svg")
    assert_drawn(page, "training-plot")
    assert_drawn(page, "live-plot")
    names = page.evaluate("Array.from(document.getElementById('training-plot').data, t => t.name)")
    assert set(names) == {f"{metrics.parent.parent.name}/{metrics.parent.name}"}  # one run: loss, bpp, PSNR
    # (train and validation) and lr
    assert len(names) == 7
    live = len(list(sweep.rglob("rd_live.jsonl")))
    assert page.evaluate("document.getElementById('live-plot').data.length") == live
    assert page.locator("section[id^=study-]").count() == 2  # the sweep folder and the storage URL: one study
    for sid in ("study-0", "study-1"):
        assert page.locator(f"#{sid} .plotly .main-svg").count() >= 3  # history, importance, parallel coordinates
    pruned = page.locator("#study-0 table.trials tr.pruned").count()
    assert pruned > 0 and page.locator("#study-0 table.trials tr").count() == 15  # 14 trials and the header
    assert errors == [] and refused == [], (errors, refused)
    page.close()


@pytest.mark.slow
def test_crops_are_decoded_from_the_bitstream(browser, smoke_run, data_root, tmp_path):
    import base64
    import io

    import numpy as np
    from PIL import Image

    image = data_root / "kodak" / "kodim23.png"
    out = tmp_path / "crops.html"
    r = report(str(smoke_run), "-o", str(out), "--crops", str(image), "--crop-size", "64", "--crop-at", "300,200")
    assert r.returncode == 0, r.stderr
    assert "Decoded crops: kodim23.png" in r.stdout
    page, errors, refused = open_offline(browser, out)
    figs = page.evaluate("""Array.from(document.querySelectorAll('#crops figure.crop'), f => [
        f.querySelector('figcaption').textContent, f.querySelector('img').src, f.dataset.cropPsnr || null])""")
    assert errors == [] and refused == [], (errors, refused)
    page.close()
    labels = [f[0] for f in figs]
    assert labels[0].startswith("original") and labels[1].startswith("factorized λ 0.0067")
    assert any(x.startswith("JPEG q") for x in labels) and any(x.startswith("WEBP q") for x in labels)
    pixels = [np.asarray(Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).convert("RGB"), np.float64)
              for _, src, _ in figs]
    ref = np.asarray(Image.open(image).convert("RGB"), np.float64)[200:264, 300:364]
    assert np.array_equal(pixels[0], ref)
    for (label, _, shown), px in zip(figs[1:], pixels[1:]):  # every crop's PSNR, recomputed here
        assert px.shape == (64, 64, 3), label
        assert float(shown) == pytest.approx(10 * np.log10(255 ** 2 / np.mean((px - ref) ** 2)), abs=1e-5), label
    # ours is the real bitstream: `compresslab compress` + `decompress` give the very same pixels
    ckpt = smoke_run / "checkpoints" / "last.ckpt"
    clab, png = tmp_path / "x.clab", tmp_path / "x.png"
    assert run_py(["-m", "compresslab", "compress", str(ckpt), str(image), "-o", str(clab)]).returncode == 0
    r = run_py(["-m", "compresslab", "decompress", str(clab), "--ckpt", str(ckpt), "-o", str(png),
                "--in-process"])
    assert r.returncode == 0, r.stderr
    assert np.array_equal(pixels[1], np.asarray(Image.open(png).convert("RGB"), np.float64)[200:264, 300:364])


@pytest.mark.slow
def test_reproduction_table_beside_the_bd_matrix(browser, tmp_path):
    """The paper's table as `compresslab reproduce` wrote it, beside the matrix computed here from the runs it
    reads: its "ours" BD-rates are the matrix's cells (two writers, one implementation)."""
    require_data()
    out = tmp_path / "repro.html"
    r = report(str(REPRO), str(RUNS), "-o", str(out))
    assert r.returncode == 0, r.stderr
    page, errors, refused = open_offline(browser, out)
    rows = {r[0]: r for r in page.evaluate("""Array.from(document.querySelectorAll(
        '#reproduction-0 table.reproduction tr'), tr => Array.from(tr.children, c => c.textContent))""")}
    matrix = page.evaluate("""Object.fromEntries(Array.from(document.querySelectorAll(
        'table.bd-matrix[data-metric="psnr-rgb"] td.bd'), td => [td.dataset.curve + ' vs ' + td.dataset.ref,
        td.textContent]))""")
    for row, cell in (("BD-rate of MSP vs VVC (the paper with LOF, ours without)", "msp vs kodak/vtm"),
                      ("BD-rate, MSP-fast vs scale hyperprior (same transforms, equal budget)", "msp vs hyperprior"),
                      ("BD-rate, MSP-fast vs the factorized model (same recipe, equal budget; our control)",
                       "msp vs factorized")):
        assert matrix[cell].startswith(f"{float(rows[row][2]):+.2f} %"), (row, rows[row], matrix[cell])
    assert rows["BD-rate of MSP vs VVC (the paper with LOF, ours without)"][1] == "-2.5"  # the paper's, as published
    widths = page.evaluate("Array.from(document.querySelectorAll('#reproduction-0 img.repro'), i => i.naturalWidth)")
    assert len(widths) == 3 and all(w > 0 for w in widths)  # its figures, inlined
    assert errors == [] and refused == [], (errors, refused)
    page.close()


@pytest.mark.slow
def test_watch_picks_up_new_and_corrupt_results(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    require_data()
    sweep, out = tmp_path / "sweep", tmp_path / "live.html"
    (sweep / "run0").mkdir(parents=True)
    shutil.copy(RUNS / "factorized-lambda0.0009" / "rd.json", sweep / "run0" / "rd.json")
    proc = subprocess.Popen([sys.executable, "-m", "compresslab", "report", "--watch", str(sweep), "-o", str(out),
                             "--interval", "0.5"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})

    def page_has(text: str, within: float) -> float:
        t0 = time.monotonic()
        while time.monotonic() - t0 < within:
            if out.exists() and text in out.read_text():
                return time.monotonic() - t0
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.2)
        raise AssertionError(f"{text!r} not in {out} after {within} s")

    try:
        page_has("run0/rd.json", 120)
        assert 'http-equiv="refresh" content="30"' in out.read_text()  # a browser left open follows
        (sweep / "run1").mkdir()
        (sweep / "run1" / "rd.json").write_text('{"results": {"bpp": [0.5')  # being written
        page_has(f"Not rebuilt: {sweep / 'run1' / 'rd.json'}: not readable", 60)
        shutil.copy(RUNS / "factorized-lambda0.0018" / "rd.json", sweep / "run1" / "rd.json")
        took = page_has("run1/rd.json</code>", 60)  # its per-image table: the page was rebuilt with it
        assert took < 30, took  # a rebuild is a few seconds; generous for a loaded CI machine
    finally:
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr and len(stdout.strip().splitlines()) == 2, stdout  # the two good builds
    (line,) = stderr.strip().splitlines()
    assert line.startswith("compresslab report: ") and "not rebuilt" in line and "run1/rd.json" in line


def test_errors_are_one_line(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    one_line_error(report(str(empty), "-o", str(tmp_path / "a.html")), str(empty), "no rd.json")
    bad = tmp_path / "run" / "rd.json"
    bad.parent.mkdir()
    bad.write_text('{"results": {"bpp": [0.5], ')  # half-written
    one_line_error(report(str(bad.parent), "-o", str(tmp_path / "a.html")), str(bad), "not readable")
    one_line_error(report(str(RUNS), "-o", str(bad / "r.html")), "not an existing folder")
    existing = tmp_path / "old.html"
    existing.write_text("a user's earlier report")
    one_line_error(report(str(RUNS), "-o", str(existing)), "exists", "--force")
    assert existing.read_text() == "a user's earlier report"
    live = tmp_path / "live" / "rd_live.jsonl"  # a training still writing its live RD file: the last line is partial
    live.parent.mkdir()
    live.write_text('{"step": 200, "bpp": 1.35, "psnr-rgb": 17.0}\n{"step": 400, "bpp": 0.9')
    r = report(str(live.parent), "-o", str(tmp_path / "live.html"))
    assert r.returncode == 0 and "Live RD trajectory" in r.stdout, r.stderr
    live.write_text('{"step": 200, "bpp": 1.35, "psnr-rgb": 17.0}\n{"step": 400, "bpp": 0.9\n')  # broken for good
    one_line_error(report(str(live.parent), "-o", str(tmp_path / "live2.html")), f"{live}:2", "not a JSON line")
    one_line_error(report(str(RUNS), "-o", str(tmp_path / "b.html"), "--crops", str(tmp_path / "no.png")),
                   "--crops", "no such image")
    assert not list(tmp_path.glob(".*.tmp")) and not (tmp_path / "b.html").exists()


def test_a_report_of_result_files_imports_no_torch(tmp_path):
    """Reading results is light: torch is only for --crops (decoding bitstreams)."""
    import os
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-X", "importtime", "-m", "compresslab", "report",
                        str(RUNS / "msp-lambda0.0067"), "-o", str(tmp_path / "r.html")], cwd=REPO, text=True,
                       capture_output=True, timeout=300, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert r.returncode == 0, r.stderr[-2000:]
    mods = {line.rsplit("|", 1)[1].strip().split(".")[0] for line in r.stderr.splitlines()
            if line.startswith("import time:") and line.count("|") == 2}
    assert "plotly" in mods and not mods & {"torch", "lightning", "pytorch_lightning"}

