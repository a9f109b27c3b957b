"""Committed numbers are generated from their result files (compresslab.evaluation.render): `compresslab results
check` passes on the repository, and fails, naming file and line, when a number is edited by hand."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from compresslab.cli import main
from compresslab.evaluation.render import RenderError, markdown_files, render, value_of
from conftest import REPO


def test_every_committed_generated_number_matches_its_source(capsys):
    assert main(["results", "check", "--root", str(REPO)]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    files = markdown_files(REPO)
    assert REPO / "README.md" in files and "all match their sources" in out


def test_a_number_edited_by_hand_fails_the_check_and_render_restores_it(tmp_path, capsys):
    # the README and every source its markers name, copied: the check runs on the copy
    text = (REPO / "README.md").read_text()
    for f in {spec.split(" :: ")[0] for spec in __import__("re").findall(r"<!--v (.*?) -->", text)}:
        (tmp_path / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / f, tmp_path / f)
    marker = text.index("<!--v experiments/rd_cpu_proxy/summary.json :: rows[curve=factorized].bd_rate_vs_kodak/vtm")
    start = text.index("-->", marker) + 3
    end = text.index("<!--/v-->", start)
    good = text[start:end]
    edited = text[:start] + "+199.9 %" + text[end:]
    (tmp_path / "README.md").write_text(edited)
    assert main(["results", "check", "--root", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    line = text.count("\n", 0, start) + 1
    assert f"README.md:{line}: `+199.9 %` but experiments/rd_cpu_proxy/summary.json gives `{good}`" in err, err
    assert main(["results", "render", "--root", str(tmp_path)]) == 0
    assert (tmp_path / "README.md").read_text() == text  # rendering restores what the source says
    # a changed source changes the number
    summary = json.loads((tmp_path / "experiments/rd_cpu_proxy/summary.json").read_text())
    next(r for r in summary["rows"] if r["curve"] == "factorized")["bd_rate_vs_kodak/vtm"] = -12.34
    (tmp_path / "experiments/rd_cpu_proxy/summary.json").write_text(json.dumps(summary))
    files, bad, _ = render(tmp_path, write=False)
    assert [(m.found, m.expected) for m in bad] == [(good, "\u221212.3 %")]


def test_selectors_aggregates_ratios_and_refusals(tmp_path):
    (tmp_path / "s.json").write_text(json.dumps({"rows": [
        {"curve": "a", "bd": -7.704, "n": 2}, {"curve": "static re-fit", "bd": None, "n": 1}]}))
    (tmp_path / "bits.csv").write_text("lambda,side,all\n0.0009,10,1000\n0.0009,30,1000\n0.0018,5,500\n")
    assert value_of(tmp_path, "s.json :: rows[curve=a].bd :: {:+.2f} %") == "\u22127.70 %"
    assert value_of(tmp_path, "s.json :: rows[curve=static re-fit].bd :: {:+.1f} %") == "refused"
    assert value_of(tmp_path, "s.json :: sum:rows.n :: {:.0f}") == "3"
    assert value_of(tmp_path, "bits.csv :: sum:rows.side / sum:rows.all :: {:.2%}") == "1.80%"
    assert value_of(tmp_path, "bits.csv :: sum:rows.side / ( sum:rows.side + sum:rows.all ) * 100 :: {:.3f}") == \
        f"{100 * 45 / 2545:.3f}"
    with pytest.raises(RenderError, match="matches 2 elements, not one"):
        value_of(tmp_path, "bits.csv :: rows[lambda=0.0009].side :: {}")
    with pytest.raises(RenderError, match="no key 'bdx'"):
        value_of(tmp_path, "s.json :: rows[curve=a].bdx :: {}")
    (tmp_path / "per_lambda.md").write_text("| lambda | side bpp | change |\n|---|---|---|\n| 0.0009 | 0.00183 | -9.85 % |\n"
                                            "| 0.0018 | 0.00221 | -8.21 % |\n| mean | | -9.03 % |\n\nprose\n")
    assert value_of(tmp_path, "per_lambda.md :: rows[lambda=0.0018].change :: {}") == "\u22128.21 %"
    assert value_of(tmp_path, "per_lambda.md :: max:rows.side bpp :: {:.4f}") == "0.0022"  # the mean row's blank skipped
    with pytest.raises(RenderError, match="needs numbers"):
        value_of(tmp_path, "per_lambda.md :: max:rows.change :: {}")
    with pytest.raises(RenderError, match="source missing.json does not exist"):
        value_of(tmp_path, "missing.json :: rows :: {}")


def test_a_papers_published_value_renders_from_its_yaml(tmp_path):
    (tmp_path / "paper.yaml").write_text("published:\n  - {quantity: gain, value: -7.10}\n")
    assert value_of(tmp_path, "paper.yaml :: published[quantity=gain].value :: {:+.2f} %") == "\u22127.10 %"
    with pytest.raises(RenderError, match="matches 0 elements"):
        value_of(tmp_path, "paper.yaml :: published[quantity=nosuch].value :: {}")


def test_a_result_number_typed_by_hand_in_a_result_page_fails_the_check(tmp_path, capsys):
    from compresslab.evaluation.render import typed_numbers

    text = ("# Study\n\nAdam 5e-4, cosine to 5 %, a band of ≥ 1 dB.\n"          # recipe settings: unsigned integers
            "Adaptive saves <!--v s.json :: a :: {:+.2f} % -->−7.70 %<!--/v--> (`−9.9 %` in code, <!-- +1.0 % -->)\n"
            "```\nexample output: +12.5 %\n```\n"
            "| ideal | −11.14 % | 25.40 dB | 0.148 bpp |\n")
    found = typed_numbers(text, "x.md")
    assert [(t.line, t.number) for t in found] == [(8, "−11.14 %"), (8, "25.40 dB"), (8, "0.148 bpp")]
    (tmp_path / "experiments" / "study").mkdir(parents=True)
    (tmp_path / "s.json").write_text('{"a": -7.7}')
    (tmp_path / "experiments" / "study" / "README.md").write_text(text)
    assert main(["results", "check", "--root", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "experiments/study/README.md:8: typed number `−11.14 %`: put it between markers" in err
