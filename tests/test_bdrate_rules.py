"""BD-rate rules under audit (issue 30): each adversarial pair is written as two small CompressAI-format JSON files and
run through `compresslab bd-rate`; where we answer, the number must equal raw `bjontegaard` on the points the rule
kept, and where we refuse, the line must name the actual cause and the exit status must say so."""

import json
import math
import warnings

import bjontegaard as bd
import pytest

from compresslab.cli import build_parser, main
from compresslab.rd import bdrate
from compresslab.rd.bdrate import BDRules, bd_rate

ANCHOR = ([0.1, 0.2, 0.4, 0.8, 1.6], [28.0, 30.0, 32.0, 34.0, 36.0])


def raw(anchor, test, method="akima"):
    """bjontegaard itself, with the options we use (no matching points, overlap checked by us)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kw = dict(method=method, require_matching_points=False, min_overlap=0)
        return float(bd.bd_rate(*anchor, *test, **kw)), float(bd.bd_psnr(*anchor, *test, **kw))


def write(path, rates, psnrs, name="curve"):
    path.write_text(json.dumps({"name": name, "results": {"bpp": list(rates), "psnr-rgb": list(psnrs)}}))
    return str(path)


def run(capsys, *argv):
    rc = main(["bd-rate", *argv])
    out = capsys.readouterr()
    return rc, out.out.strip(), out.err.strip()


def bd_number(line):
    return float(line.split("BD-rate ")[1].split(" %")[0])


def test_duplicated_rates_are_refused_by_default_and_averaged_on_request(tmp_path, capsys):
    test = ([0.12, 0.25, 0.25, 0.5, 1.0], [28.2, 30.0, 31.0, 32.5, 34.8])
    a, t = write(tmp_path / "a.json", *ANCHOR), write(tmp_path / "t.json", *test)
    # the stake: which of the two 0.25 bpp points a fit keeps is arbitrary, and the number depends on it
    one = raw(ANCHOR, ([0.12, 0.25, 0.5, 1.0], [28.2, 30.0, 32.5, 34.8]))[0]
    other = raw(ANCHOR, ([0.12, 0.25, 0.5, 1.0], [28.2, 31.0, 32.5, 34.8]))[0]
    assert abs(one - other) > 5
    with pytest.raises(ValueError):  # raw bjontegaard refuses the file as it is
        raw(ANCHOR, test)
    rc, line, err = run(capsys, a, t)
    assert rc == 1 and not err
    assert line.startswith("t.json vs") and "BD-rate unavailable: test curve has duplicated rates" in line
    assert "2 points at 0.2500 bpp" in line and "30.00 dB" in line and "31.00 dB" in line
    assert "--duplicates=mean" in line
    rc, line, _ = run(capsys, a, t, "--duplicates", "mean")
    assert rc == 0 and "averaged 2 test points at 0.2500 bpp" in line
    expected = raw(ANCHOR, ([0.12, 0.25, 0.5, 1.0], [28.2, 30.5, 32.5, 34.8]))[0]
    assert bd_number(line) == pytest.approx(expected, abs=0.005)
    # rates equal to 1e-12 (the same bytes through another float path) are the same rate
    near = write(tmp_path / "n.json", [0.12, 0.25, 0.25 * (1 + 1e-12), 0.5, 1.0], test[1])
    assert "duplicated rates" in run(capsys, a, near)[1]


def test_non_monotone_curves_are_refused_naming_the_points_and_drop_names_what_went(tmp_path, capsys):
    test = ([0.12, 0.2, 0.3, 0.45, 0.6, 1.0], [28.5, 30.5, 30.0, 31.5, 31.2, 33.5])
    a, t = write(tmp_path / "a.json", *ANCHOR), write(tmp_path / "t.json", *test)
    with pytest.raises(ValueError, match="strictly increasing"):  # raw bjontegaard refuses it too
        raw(ANCHOR, test)
    rc, line, err = run(capsys, a, t)
    assert rc == 1 and not err and "test curve is not monotone" in line
    assert "0.2000 bpp / 30.50 dB" in line and "0.3000 bpp / 30.00 dB" in line  # the first fall, named
    assert "0.4500 bpp / 31.50 dB" in line and "0.6000 bpp / 31.20 dB" in line  # the second
    assert "--monotone=drop" in line
    rc, line, _ = run(capsys, a, t, "--monotone", "drop")
    assert rc == 0 and "dropped 2 non-monotone" in line
    kept = bdrate.monotone_points(*test)
    assert bd_number(line) == pytest.approx(raw(ANCHOR, (list(kept[0]), list(kept[1])))[0], abs=0.005)
    for r, q in zip(*test):  # every dropped point is named, no kept one is
        assert (f"test {r:.4f} bpp / {q:.2f} dB" in line) == (r not in kept[0])
    # both 30.5 and 30.0 dB can be kept (and both 31.5 and 31.2): four subsets of five points, so say it
    assert "4 equally long monotone subsets" in line


def test_equal_quality_at_two_rates_is_not_monotone():
    res = bd_rate(*ANCHOR, [0.12, 0.25, 0.5, 0.7, 1.0], [28.5, 30.5, 32.0, 32.0, 34.0])
    assert not res.available and "not monotone" in res.reason and "0.7000 bpp / 32.00 dB" in res.reason


def test_a_narrow_shared_band_is_refused_in_absolute_db(tmp_path, capsys):
    anchor = ([0.1, 0.2, 0.22, 0.4, 0.8], [28.0, 29.0, 29.13, 32.0, 34.0])
    test = ([0.25, 0.26, 0.27, 0.28], [29.0, 29.04, 29.09, 29.13])  # the narrower curve is only 0.13 dB wide
    a, t = write(tmp_path / "a.json", *anchor), write(tmp_path / "t.json", *test)
    res = bd_rate(*anchor, *test)
    assert res.coverage == pytest.approx(1.0) and res.test_points_in_overlap == 4 and res.anchor_points_in_overlap == 2
    rc, line, _ = run(capsys, a, t)
    assert rc == 1 and "the shared quality band [29.00, 29.13] is 0.13 dB wide (< 1 dB, --min-band-db)" in line
    both = bd_rate(*anchor, *test, min_points_in_band=3).reason  # every failed rule is named, not the first
    assert "0.13 dB wide" in both and "holds 4 test and 2 anchor point(s) (< 3 each)" in both
    rc, line, _ = run(capsys, a, t, "--min-band-db", "0.1")
    assert rc == 0 and bd_number(line) == pytest.approx(raw(anchor, test)[0], abs=0.005)


def test_the_band_is_measured_in_db_for_linear_ms_ssim():
    a_q = [0.90, 0.93, 0.95, 0.97, 0.98]  # 10.0 ... 17.0 dB
    t_q = [0.951, 0.955, 0.96, 0.965]     # 13.1 ... 14.6 dB: 1.46 dB wide in dB, 0.014 in MS-SSIM
    t_r = [0.42, 0.45, 0.5, 0.6]
    res = bd_rate(ANCHOR[0], a_q, t_r, t_q, metric="ms-ssim-rgb", min_points_in_band=0)
    assert res.available and res.band_db == pytest.approx(-10 * math.log10(0.035) + 10 * math.log10(0.049))
    assert not bd_rate(ANCHOR[0], a_q, t_r, t_q, metric="ms-ssim-rgb", min_points_in_band=0,
                       min_band_db=2).available


def test_rates_that_do_not_overlap_are_refused_with_that_reason(tmp_path, capsys):
    anchor = ([0.1, 0.15, 0.2, 0.3], [28.0, 30.0, 32.0, 34.0])
    test = ([0.5, 0.6, 0.75, 0.9], [28.5, 30.5, 32.5, 33.5])
    assert math.isnan(raw(anchor, test)[1])  # bjontegaard's BD-PSNR has no rate range to average over
    rc, line, _ = run(capsys, write(tmp_path / "a.json", *anchor), write(tmp_path / "t.json", *test))
    assert rc == 1 and "rates do not overlap: anchor spans 0.100-0.300 bpp, test 0.500-0.900 bpp" in line
    assert "non-finite" not in line


def test_points_at_a_band_edge_count_within_the_tolerance(tmp_path, capsys):
    test = ([0.11, 0.16, 0.22, 0.3], [28.0 + 1e-8, 29.0, 29.9, 31.0])  # starts 1e-8 dB above the anchor's 28 dB
    a, t = write(tmp_path / "a.json", *ANCHOR), write(tmp_path / "t.json", *test)
    res = bd_rate(*ANCHOR, *test)
    assert res.available and res.anchor_points_in_overlap == 2  # 28.0 (1e-8 below the edge) and 30.0
    rc, line, _ = run(capsys, a, t)
    assert rc == 0 and bd_number(line) == pytest.approx(raw(ANCHOR, test)[0], abs=0.005)
    rc, line, _ = run(capsys, a, t, "--band-tol-db", "0")
    assert rc == 1 and "holds 4 test and 1 anchor point(s) (< 2 each)" in line


def test_rd_and_bd_rate_take_the_same_rule_flags_with_the_modules_defaults():
    p = build_parser()
    bd_args = vars(p.parse_args(["bd-rate", "kodak/vtm", "x.json"]))
    rd_args = vars(p.parse_args(["rd", "x"]))
    rule_flags = ["method", "min_coverage", "min_points_in_band", "min_band_db", "band_tol_db", "monotone",
                  "duplicates"]
    defaults = BDRules()
    for flag in rule_flags:
        assert bd_args[flag] == rd_args[flag] == getattr(defaults, flag), flag
    assert (defaults.min_band_db, defaults.band_tol_db, defaults.monotone, defaults.duplicates) == (
        bdrate.MIN_BAND_DB, bdrate.BAND_TOL_DB, "refuse", "refuse")
    custom = ["--min-band-db", "0.5", "--monotone", "drop", "--duplicates", "mean", "--min-points-in-band", "3",
              "--min-coverage", "0.7", "--band-tol-db", "0.01", "--method", "pchip"]
    a = vars(p.parse_args(["bd-rate", "kodak/vtm", "x.json", *custom]))
    b = vars(p.parse_args(["rd", "x", *custom]))
    assert all(a[f] == b[f] for f in rule_flags)
    with pytest.raises(ValueError, match="unknown monotone rule"):
        BDRules(monotone="keep")


def _runs(folder, model, points, lambdas=None):
    for i, (r, q) in enumerate(points):
        run_dir = folder / f"{model}-{i}"
        run_dir.mkdir(parents=True)
        (run_dir / "rd.json").write_text(json.dumps({
            "name": model, "results": {"bpp": [r], "psnr-rgb": [q]},
            "meta": {"model": {"name": model}, "lambda": (lambdas or [0.001 * (i + 1)] * 99)[i]}}))


def test_bd_rate_merges_one_point_rd_files_and_run_folders_into_one_curve(tmp_path, capsys):
    pts = [(0.12, 28.3), (0.22, 30.1), (0.45, 32.2), (0.9, 34.1), (1.5, 35.6)]
    _runs(tmp_path / "sweep", "factorized", pts)
    a = write(tmp_path / "a.json", *ANCHOR)
    expected = raw(ANCHOR, ([p[0] for p in pts], [p[1] for p in pts]))[0]
    rc, line, err = run(capsys, a, str(tmp_path / "sweep"))
    assert rc == 0 and not err and "points 5 vs 5" in line and bd_number(line) == pytest.approx(expected, abs=0.005)
    files = sorted(str(f) for f in (tmp_path / "sweep").rglob("rd.json"))
    rc, line, _ = run(capsys, a, *files)
    assert rc == 0 and line.startswith("factorized (5 inputs) vs") and bd_number(line) == pytest.approx(expected,
                                                                                                       abs=0.005)
    # one point is a point, not a curve: refused with the count, not misread
    rc, line, _ = run(capsys, a, files[0])
    assert rc == 1 and "need at least 4 RD points per curve, have 1 (test)" in line
    # a copy of one run in a second folder is a duplicated rate, named by its files
    (tmp_path / "copy").mkdir()
    (tmp_path / "copy" / "rd.json").write_text((tmp_path / "sweep" / "factorized-2" / "rd.json").read_text())
    rc, line, _ = run(capsys, a, str(tmp_path / "sweep"), str(tmp_path / "copy" / "rd.json"))
    assert rc == 1 and "duplicated rates" in line and "copy/rd.json" in line and "factorized-2/rd.json" in line
    # a folder with two models is two curves: refused in one line, never merged
    _runs(tmp_path / "sweep", "hyperprior", pts[:4])
    rc, out, err = run(capsys, a, str(tmp_path / "sweep"))
    assert rc == 2 and not out and "holds 2 curves (factorized (5 points), hyperprior (4 points))" in err
    assert "Traceback" not in err and len(err.splitlines()) == 1
    (tmp_path / "bad.json").write_text("{not json")
    rc, out, err = run(capsys, a, str(tmp_path / "bad.json"))
    assert rc == 2 and "is not a JSON result file" in err and len(err.splitlines()) == 1
    rc, out, err = run(capsys, a, str(tmp_path / "empty_dir_that_is_missing"))
    assert rc == 2 and "is not a result file, a folder of runs or an anchor name" in err and len(err.splitlines()) == 1


def test_rd_applies_the_same_rules_to_a_sweep(tmp_path, capsys, monkeypatch):
    """`rd` on a folder of single-point runs: the non-monotone curve is refused by default with the points named,
    --monotone drop answers with raw bjontegaard's number on the kept points and names the dropped one."""
    pts = [(0.12, 28.3), (0.22, 30.1), (0.3, 29.8), (0.45, 32.2), (0.9, 34.1)]
    _runs(tmp_path / "sweep", "factorized", pts)
    (tmp_path / "anchors" / "toy").mkdir(parents=True)
    write(tmp_path / "anchors" / "toy" / "ref.json", *ANCHOR, name="ref")
    monkeypatch.setenv("COMPRESSLAB_ANCHORS", str(tmp_path / "anchors"))
    assert main(["rd", str(tmp_path / "sweep"), "--anchor", "toy/ref", "--out", str(tmp_path / "o1")]) == 0
    row = json.loads((tmp_path / "o1" / "summary.json").read_text())["rows"][0]
    assert row["bd_rate_vs_toy/ref"] is None and "not monotone" in row["anchor_note"]
    assert "0.2200 bpp / 30.10 dB" in row["anchor_note"] and "0.3000 bpp / 29.80 dB" in row["anchor_note"]
    assert main(["rd", str(tmp_path / "sweep"), "--anchor", "toy/ref", "--out", str(tmp_path / "o2"),
                 "--monotone", "drop"]) == 0
    summary = json.loads((tmp_path / "o2" / "summary.json").read_text())
    row = summary["rows"][0]
    kept = [p for p in pts if p != (0.3, 29.8)]
    assert row["bd_rate_vs_toy/ref"] == pytest.approx(raw(ANCHOR, tuple(map(list, zip(*kept))))[0], abs=1e-9)
    assert "0.3000 bpp / 29.80 dB" in row["dropped_vs_anchor"] and summary["bd_rules"]["monotone"] == "drop"
    assert "dropped 1 non-monotone" in capsys.readouterr().out
