"""Curves join only comparable points (issue 41, item 3). Real rd.json files (the published rd_cpu_proxy factorized
runs, copied and their meta edited the way a smoke run, an MS-SSIM run or an N=32 run writes it) through
`compresslab rd` and `bd-rate` as a user types them: points that differ in the comparability key are never one
curve, a partial evaluation vs a full anchor is refused unless --allow-partial (then the number is raw
bjontegaard's), an anchor built on a subset says so, and files of different metrics are one line."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import bjontegaard as bd
import pytest

from conftest import REPO, run_py

PUBLISHED = sorted((REPO / "experiments/rd_cpu_proxy/runs").glob("factorized-lambda*/rd.json"))
SUMMARY = json.loads((REPO / "experiments/rd_cpu_proxy/summary.json").read_text())


def cli(*argv, env=None):
    r = run_py(["-m", "compresslab.cli", *map(str, argv)], timeout=120, env=env or {})
    return r.returncode, r.stdout.strip(), r.stderr.strip()


def copy_run(dst: Path, src: Path, bpp=None, psnr=None, **meta) -> Path:
    """A run folder holding a copy of a published rd.json, its meta edited (model sizes under "model.")."""
    doc = json.loads(src.read_text())
    for k, v in meta.items():
        (doc["meta"]["model"] if k.startswith("model.") else doc["meta"])[k.removeprefix("model.")] = v
    if bpp is not None:
        doc["results"]["bpp"], doc["results"]["psnr-rgb"] = [bpp], [psnr]
    dst.mkdir(parents=True)
    (dst / "rd.json").write_text(json.dumps(doc))
    return dst / "rd.json"


SMOKE = [(0.15, 26.0), (0.3, 28.0), (0.5, 30.0), (0.8, 32.0)]  # a 4-lambda smoke curve: 2 images cropped to 256


def smoke_runs(root: Path, **meta) -> list[Path]:
    return [copy_run(root / f"smoke-{i}", PUBLISHED[0], b, q, images=2, crop=256, **{"lambda": 0.001 * (i + 1)},
                     **meta) for i, (b, q) in enumerate(SMOKE)]


def raw_bd(anchor, test):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(bd.bd_rate(*anchor, *test, method="akima", require_matching_points=False, min_overlap=0))


def vtm():
    from compresslab.rd.anchors import load_anchor

    return load_anchor("kodak/vtm").curve("psnr-rgb")


def test_a_mixed_folder_is_split_into_named_curves_never_one(tmp_path):
    runs = tmp_path / "runs"
    for f in PUBLISHED:  # the 24-image quickstart-style curve, as published
        copy_run(runs / f.parent.name, f)
    smoke_runs(runs, **{"model.N": 32})
    copy_run(runs / "msssim", PUBLISHED[2], 0.41, 25.0, loss_metric="ms-ssim")
    rc, out, err = cli("rd", runs, "--out", tmp_path / "out")
    assert rc == 0, err
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert {c: len(p) for c, p in summary["curves"].items()} == {
        "factorized": 5, "factorized [images=2, crop=256, N=32]": 4, "factorized [loss=ms-ssim]": 1}
    assert "factorized: points differ in images, crop, loss, N, so they form 3 curves, not one" in out
    for label, pts in summary["curves"].items():  # every point's own file has its curve's key
        key = summary["curve_keys"][label]
        for p in pts:
            meta = json.loads(Path(p["file"]).read_text())["meta"]
            assert (meta["images"], meta["crop"], meta["loss_metric"], meta["model"]["N"]) == \
                (key["images"], key["crop"], key["loss_metric"], key["N"])
        assert all(Path(p["file"]).parent.name.startswith(
            {"factorized": "factorized-", "factorized [loss=ms-ssim]": "msssim"}.get(label, "smoke")) for p in pts)
    rows = {r["curve"]: r for r in summary["rows"]}
    published = next(r for r in SUMMARY["rows"] if r["curve"] == "factorized")
    assert rows["factorized"]["bd_rate_vs_kodak/vtm"] == pytest.approx(published["bd_rate_vs_kodak/vtm"], abs=1e-9)
    assert rows["factorized"]["evaluation"] == "kodak, 24 images"
    smoke = rows["factorized [images=2, crop=256, N=32]"]
    assert smoke["bd_rate_vs_kodak/vtm"] is None and "partial evaluation (kodak, 2 of 24 images, crop 256)" in \
        smoke["anchor_note"] and "--allow-partial" in smoke["anchor_note"]
    # bd-rate needs one curve: the folder, or files of different keys, are refused in one line naming what differs
    rc, out, err = cli("bd-rate", "kodak/vtm", runs)
    assert rc == 2 and not out and "holds 3 curves" in err and len(err.splitlines()) == 1
    rc, out, err = cli("bd-rate", "kodak/vtm", *PUBLISHED[:3], runs / "smoke-0" / "rd.json")
    assert rc == 2 and len(err.splitlines()) == 1 and "not measured or trained the same way" in err
    assert "images 24" in err and "vs 2" in err and "crop None" in err and "N 64" in err and "vs 32" in err


def test_a_partial_evaluation_vs_a_full_anchor_is_refused_unless_allowed(tmp_path):
    smoke_runs(tmp_path / "runs")
    rc, out, err = cli("bd-rate", "kodak/vtm", tmp_path / "runs")
    assert rc == 1 and len(out.splitlines()) == 1 and "BD-rate unavailable: partial evaluation (kodak, 2 of 24 " \
        "images, crop 256) vs kodak/vtm (kodak, 24 images): image count and crop differ" in out, (out, err)
    expected = raw_bd(vtm(), tuple(map(list, zip(*SMOKE))))
    rc, out, err = cli("bd-rate", "kodak/vtm", tmp_path / "runs", "--allow-partial")
    assert rc == 0 and "compared under --allow-partial: partial evaluation" in out, (out, err)
    assert float(out.split("BD-rate ")[1].split(" %")[0]) == pytest.approx(expected, abs=0.005)
    # rd: the same rule, the same flag
    assert cli("rd", tmp_path / "runs", "--out", tmp_path / "o1")[0] == 0
    row = json.loads((tmp_path / "o1" / "summary.json").read_text())["rows"][0]
    assert row["bd_rate_vs_kodak/vtm"] is None and "image count and crop differ" in row["anchor_note"]
    assert cli("rd", tmp_path / "runs", "--out", tmp_path / "o2", "--allow-partial")[0] == 0
    row = json.loads((tmp_path / "o2" / "summary.json").read_text())["rows"][0]
    assert row["bd_rate_vs_kodak/vtm"] == pytest.approx(expected, abs=1e-9)
    assert row["evaluation"] == "kodak, 2 of 24 images, crop 256" and "--allow-partial" in row["anchor_note"]


def test_an_anchor_built_on_a_subset_says_so_wherever_it_is_shown(tmp_path):
    (tmp_path / "anchors" / "kodak").mkdir(parents=True)
    doc = json.loads((REPO / "src/compresslab/anchor_data/kodak/vtm.json").read_text())
    doc["meta"] = {"builder": "compresslab anchors build", "codec": "external", "dataset": "kodak", "images": 4}
    (tmp_path / "anchors" / "kodak" / "vtm-4.json").write_text(json.dumps(doc))
    env = {"COMPRESSLAB_ANCHORS": str(tmp_path / "anchors")}
    rc, out, _ = cli("anchors", "--dataset", "kodak", env=env)
    assert rc == 0 and any("kodak/vtm-4" in ln and "(built on kodak, 4 of 24 images)" in ln for ln in out.splitlines())
    rc, out, _ = cli("bd-rate", "kodak/vtm-4", *PUBLISHED, env=env)  # a 24-image curve vs a 4-image anchor
    assert rc == 1 and "kodak/vtm-4 (kodak, 4 of 24 images): image count differs" in out
    rc, out, _ = cli("bd-rate", "kodak/vtm-4", *PUBLISHED, "--allow-partial", env=env)
    published = next(r for r in SUMMARY["rows"] if r["curve"] == "factorized")["bd_rate_vs_kodak/vtm"]
    assert rc == 0 and "kodak/vtm-4 built on kodak, 4 of 24 images" in out  # same points as VTM: same number
    assert float(out.split("BD-rate ")[1].split(" %")[0]) == pytest.approx(published, abs=0.005)
    assert cli("rd", *PUBLISHED, "--anchor", "kodak/vtm-4", "--out", tmp_path / "o", "--allow-partial",
               env=env)[0] == 0
    assert "kodak, 4 of 24 images" in (tmp_path / "o" / "rd_table.md").read_text()


def test_rd_on_files_of_different_metrics_is_one_line_and_leaves_no_folder(tmp_path):
    bpp = [0.2, 0.4, 0.7, 1.1]
    (tmp_path / "a.json").write_text(json.dumps({"name": "theirs", "results": {
        "bpp": bpp, "psnr-rgb": [27.0, 29.5, 32.0, 34.5], "ms-ssim-rgb": [0.9, 0.94, 0.96, 0.98]}}))
    (tmp_path / "b.json").write_text(json.dumps({"name": "ours", "results": {
        "bpp": bpp, "ms-ssim-rgb": [0.91, 0.945, 0.965, 0.982]}}))
    rc, out, err = cli("rd", tmp_path / "a.json", tmp_path / "b.json", "--reference", "a", "--out", tmp_path / "o")
    assert rc == 2 and len(err.splitlines()) == 1 and "Traceback" not in err and "KeyError" not in err
    assert "b.json: no 'psnr-rgb' values" in err and "--metric ms-ssim-db-rgb" in err
    assert not (tmp_path / "o").exists()
    rc, out, err = cli("rd", tmp_path / "a.json", tmp_path / "b.json", "--reference", "a", "--out", tmp_path / "o",
                       "--metric", "ms-ssim-db-rgb")
    assert rc == 0 and (tmp_path / "o" / "rd_table.md").is_file(), err


def test_published_run_folders_are_each_one_curve_per_model():
    """The key splits nothing that was published: every committed results folder groups as before."""
    from compresslab.rd.points import load_curves

    for runs in sorted(REPO.glob("experiments/**/runs")):
        curves, keys, notes = load_curves([str(runs)])
        assert curves and not notes, (runs, notes)
        assert all("[" not in label for label in curves)


def test_a_sweep_summary_splits_the_same_way(tmp_path, caplog):
    """The end-of-sweep summary (sweeps.hydra_callbacks.write_summary, after every job) groups by the same key: a
    sweep folder holding the full runs and smoke runs gets two curves, the smoke one refused vs the anchor."""
    from compresslab.sweeps.hydra_callbacks import write_summary

    for i, f in enumerate(PUBLISHED):
        copy_run(tmp_path / f"{i}_full", f)
    smoke_runs(tmp_path)
    assert write_summary(tmp_path, quiet=True) == tmp_path / "rd_summary"
    assert "factorized: points differ in images, crop, so they form 2 curves" in caplog.text  # said, even quiet
    summary = json.loads((tmp_path / "rd_summary" / "summary.json").read_text())
    assert {c: len(p) for c, p in summary["curves"].items()} == {"factorized": 5,
                                                                 "factorized [images=2, crop=256]": 4}
    rows = {r["curve"]: r for r in summary["rows"]}
    assert rows["factorized [images=2, crop=256]"]["bd_rate_vs_kodak/vtm"] is None
    assert isinstance(rows["factorized"]["bd_rate_vs_kodak/vtm"], float)
