"""The Optuna study notes under experiments/search (issue 30): their numbers are markers over the committed study
files, no result number is typed outside one, the two generated JSON files they read (flat_trials.json,
pruning_comparison.json) are what their scripts give from the committed studies, and an edited number is caught."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
from pathlib import Path

import pytest

from compresslab.evaluation.render import MARKER, markdown_files, render, render_text
from conftest import REPO

SEARCH = REPO / "experiments" / "search"
NOTES = sorted(SEARCH.glob("*/README.md")) + [SEARCH / "pruning_comparison.md"]
COMPARED = ("quickstart_lr_warmup_optuna5", "quickstart_lr_warmup_pruned", "quickstart_lr_warmup_pruned_other_draws",
            "quickstart_lr_warmup_pruned_median")  # the order of the command in pruning_comparison.md
# typed numbers allowed outside markers: recipe settings, versions and the target, not results
RECIPE = ("λ=0.0483", "cosine to 5 %", "Optuna 5.0.0", "SQLAlchemy 2.1.9", "≥ 2×", "not 2×")


def _script(name: str):
    spec = importlib.util.spec_from_file_location(f"search_{name}", SEARCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _prose(path: Path) -> str:
    """The note without code, inline code, generated numbers and the table pruning_comparison.py writes."""
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
    text = MARKER.sub("", text)
    text = re.sub(r"`[^`\n]*`", "", text)
    for phrase in RECIPE:
        text = text.replace(phrase, "")
    return "\n".join(line for line in text.splitlines() if not line.startswith("| quickstart_lr_warmup"))


def test_every_search_note_is_generated_and_types_no_result_number():
    assert len(NOTES) == 6 and set(NOTES) <= set(markdown_files(REPO, [str(p.relative_to(REPO)) for p in NOTES]))
    files, bad, count = render(REPO, [str(p.relative_to(REPO)) for p in NOTES], write=False)
    assert len(files) == len(NOTES) and count > 150 and not bad, [str(m) for m in bad]
    for note in NOTES:
        prose = _prose(note)
        typed = re.findall(r"\d+\.\d+", prose) + re.findall(r"\d\s?(?:%|×)", prose)  # decimals, percentages, ratios
        assert not typed, f"{note.relative_to(REPO)}: typed numbers {typed}: put them between markers"


def test_flat_trials_json_is_what_its_script_gives():
    flat = _script("flat_trials")
    assert (SEARCH / "flat_trials.json").read_text() == flat.text(flat.build()), \
        "experiments/search/flat_trials.json is stale: run python experiments/search/flat_trials.py"


def test_pruning_comparison_json_and_table_are_what_the_script_gives(tmp_path):
    pytest.importorskip("optuna")
    comparison = _script("pruning_comparison")
    for name in COMPARED:  # a copy: opening a study must not touch the committed database
        (tmp_path / name).mkdir()
        for f in ("optuna.db", "optuna_study.json"):
            shutil.copy(SEARCH / name / f, tmp_path / name / f)
    rows = [comparison.summary(tmp_path / name) for name in COMPARED]
    committed = json.loads((SEARCH / "pruning_comparison.json").read_text())
    assert json.loads(json.dumps(comparison.numbers(rows))) == committed
    table = "\n".join(line for line in (SEARCH / "pruning_comparison.md").read_text().splitlines()
                      if line.startswith("|")) + "\n"
    assert table == comparison.table(rows)


def test_an_edited_search_number_is_a_mismatch_on_its_line():
    note = SEARCH / "pruning_comparison.md"
    text = note.read_text()
    spec = ("experiments/search/pruning_comparison.json :: rows[folder=quickstart_lr_warmup_pruned]."
            "fewer_steps_than_first :: {:.1f}×")
    start = text.index(f"<!--v {spec} -->") + len(f"<!--v {spec} -->")
    end = text.index("<!--/v-->", start)
    good = text[start:end]
    edited = text[:start] + "2.0×" + text[end:]
    restored, bad = render_text(REPO, edited, "pruning_comparison.md")
    assert [(m.line, m.found, m.expected) for m in bad] == [(text.count("\n", 0, start) + 1, "2.0×", good)]
    assert restored == text
