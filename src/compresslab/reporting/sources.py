"""What a report is built from: the result files under the paths a user gives (run folders, sweep folders, rd.json
files, Optuna storage URLs), each checked readable before anything is drawn, so a bad one is named in one line."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

STORAGE_PREFIXES = ("sqlite:///", "postgresql://", "postgresql+", "mysql://", "mysql+")
STUDY_FILES = ("optuna.db", "optuna_study.json")  # what makes a folder a sweep with a study (sweeps.report.open_study)


@dataclass
class Sources:
    rd_files: list[Path] = field(default_factory=list)          # rd.json / CompressAI-format / summary.json files
    metrics: dict[str, Path] = field(default_factory=dict)     # run name -> metrics.csv (Lightning's CSVLogger)
    live: dict[str, Path] = field(default_factory=dict)        # run name -> rd_live.jsonl (RD point per eval step)
    studies: list[str] = field(default_factory=list)           # sweep folders holding a study, or storage URLs
    reproductions: list[Path] = field(default_factory=list)    # folders with a `compresslab reproduce` report.md

    @property
    def empty(self) -> bool:
        return not (self.rd_files or self.metrics or self.live or self.studies or self.reproductions)


def _run_name(file: Path, root: Path) -> str:
    """A run's name in the page: its folder relative to the folder the user gave (the given folder and its parent
    when the file sits in it: runs/<name>/<time stamp>)."""
    parent = file.parent
    rel = parent.relative_to(root) if parent.is_relative_to(root) and parent != root else None
    return f"{root.name}/{rel}" if rel else f"{root.parent.name}/{root.name}"  # a run folder: its sweep/run name


def _check_json(f: Path) -> None:
    try:
        doc = json.loads(f.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ValueError(f"{f}: not readable as a JSON result file ({e}); fix or remove it, or leave it out of the "
                         f"paths given") from None
    if not isinstance(doc, dict):
        raise ValueError(f"{f}: not a result file (expected a JSON object)")


def gather(inputs: Iterable[str]) -> Sources:
    """The result files under ``inputs``; FileNotFoundError / ValueError naming the input that holds nothing usable."""
    from compresslab.rd.curves import find_rd_files
    from compresslab.reporting.reproduction import is_reproduction

    src = Sources()
    for spec in inputs:
        if spec.startswith(STORAGE_PREFIXES):
            src.studies.append(spec)
            continue
        path = Path(spec)
        if not path.exists():
            raise FileNotFoundError(f"{spec}: no such file or folder (give run folders, sweep folders, rd.json files "
                                    f"or an Optuna storage URL such as sqlite:///sweep/optuna.db)")
        if path.is_file():
            if path.name == "metrics.csv":
                src.metrics[_run_name(path.resolve(), path.resolve().parent)] = path
            elif path.name == "rd_live.jsonl":
                src.live[_run_name(path.resolve(), path.resolve().parent)] = path
            elif path.name == "optuna.db":
                src.studies.append(str(path.parent))
            elif path.suffix == ".json":
                src.rd_files.append(path)
            else:
                raise ValueError(f"{spec}: not a result file the report reads (rd.json, metrics.csv, rd_live.jsonl, "
                                 f"optuna.db)")
            continue
        found = find_rd_files([str(path)])
        src.rd_files += found
        for f in sorted(path.rglob("metrics.csv")):
            src.metrics[_run_name(f, path)] = f
        for f in sorted(path.rglob("rd_live.jsonl")):
            src.live[_run_name(f, path)] = f
        sweeps = {f.parent for name in STUDY_FILES for f in path.rglob(name)}
        src.studies += [str(d) for d in sorted(sweeps)]
        repro = sorted(f.parent for f in path.rglob("report.md") if is_reproduction(f.parent))
        src.reproductions += repro
        if not (found or any(Path(f).is_relative_to(path) for f in [*src.metrics.values(), *src.live.values()])
                or sweeps or repro):
            raise FileNotFoundError(f"{spec}: no rd.json, metrics.csv, rd_live.jsonl, Optuna study or reproduction "
                                    f"report under this folder; give a run folder, a sweep folder or result files")
    src.rd_files = sorted(set(src.rd_files))
    for f in src.rd_files:
        _check_json(f)
    if src.empty:
        raise FileNotFoundError("nothing to report: give run folders, sweep folders, rd.json files or a storage URL")
    return src
