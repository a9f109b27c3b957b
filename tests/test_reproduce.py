"""`compresslab reproduce`: steps run once and are skipped when their results exist, the report puts the paper's
number beside ours (read from the results' table) and never fills 'ours' from the paper."""

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


def test_steps_run_once_then_are_skipped_and_the_report_compares(fake_paper, tmp_path):
    report = rp.reproduce("toy2025", "cpu_proxy", out=str(tmp_path / "rep"))
    assert (fake_paper / "count.txt").read_text() == "1"
    text = report.read_text()
    assert "| gain | -5.0 | -4.25 | +0.75 | Table 1 |" in text
    assert "| other |  | not available |  | not reported |" in text  # no paper number filled in as ours
    rp.reproduce("toy2025", "cpu_proxy", out=str(tmp_path / "rep"))
    assert (fake_paper / "count.txt").read_text() == "1"  # results present: the steps are not rerun
    assert "skipped (results present" in report.read_text()
    rp.reproduce("toy2025", "cpu_proxy", out=str(tmp_path / "rep"), rerun=True)
    assert (fake_paper / "count.txt").read_text() == "2"


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
