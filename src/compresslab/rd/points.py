"""The points of RD curves, read from result files: rd.json (one point), CompressAI's multi-point result files and
committed summary.json files, grouped into curves by label and comparability key (rd.comparable)."""

from __future__ import annotations

import glob
import json
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable, Sequence

from compresslab.rd.comparable import CurveKey, name_curves
from compresslab.evaluation.quality import with_derived_metrics
from compresslab.evaluation.results import RDMeta, RDResult, current_label


def find_rd_files(paths: Iterable[str]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        matches = [Path(m) for m in glob.glob(p)] or [Path(p)]
        for m in matches:
            if m.is_file() and m.suffix == ".json":
                out.append(m)
            elif m.is_dir():
                out.extend(sorted(m.rglob("rd.json")))
    return sorted(set(out))


def _get(d: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(d, dict) or part not in d:
            return None
        d = d[part]
    return d


def file_points(doc: dict[str, Any], f: Path) -> list[dict[str, Any]]:
    """Every point of one result file: our rd.json holds one, CompressAI's eval_model output and the published
    anchors hold one per quality (parallel lists under "results")."""
    rd = RDResult.from_json(doc, where=str(f))  # one reader of the format (evaluation.results)
    n = len(rd.results["bpp"])
    results = with_derived_metrics(rd.results)
    cols = {k: v for k, v in results.items() if isinstance(v, list) and len(v) == n}
    lambdas = rd.meta.extra.get("lambdas") or ([rd.meta.lmbda] * n if n == 1 else [None] * n)
    return [{**{k: v[i] for k, v in cols.items()}, "lmbda": lambdas[i], "step": rd.meta.step, "file": str(f)}
            for i in range(n)]


def curve_label(doc: dict[str, Any], f: Path, group_by: Sequence[str] = ()) -> str:
    """The curve a result file's points join: its label (a variant such as the oracle bound), else its model's
    name, else the file's own name; "+LOF" for results with latent overfitting."""
    meta = RDMeta.from_json(doc.get("meta") or {})
    label = str(meta.label or meta.model.get("name") or doc.get("name") or f.parent.name)
    raw = doc.get("meta") or {}
    for key in group_by:
        label += f" {key}={_get(raw, key)}"
    return label + (" +LOF" if meta.lof else "")


def is_summary(doc: Any) -> bool:
    """A summary.json that ``summarize_runs`` wrote (curves of points, rows of BD numbers), not a result file."""
    return isinstance(doc, dict) and isinstance(doc.get("curves"), dict) and "rows" in doc and "results" not in doc


def load_curves(paths: Iterable[str], group_by: Sequence[str] = ()) -> tuple[dict[str, list[dict[str, Any]]],
                                                                           dict[str, CurveKey], list[str]]:
    """(curve label -> points, curve label -> comparability key, one note per label split by the key): all points
    of every result file, or of every curve of a summary.json given (a folder whose runs are not committed re-plots
    and re-tables from its own summary). Curves are grouped by model name (or the file's label; + config keys in
    group_by, read from the run's meta, e.g. ``model.N``; LOF results form their own curves) and by ``CurveKey``:
    points measured differently, or made by other sizes or losses, are never one curve."""
    groups: dict[tuple[str, CurveKey], list[dict[str, Any]]] = defaultdict(list)
    for f in find_rd_files(paths):
        doc = json.loads(f.read_text())
        if is_summary(doc):  # a committed summary.json whose runs are not committed: its curves, as they are
            keys = doc.get("curve_keys") or {}
            for label, pts in doc["curves"].items():
                groups[(current_label(label), CurveKey.from_dict(keys.get(label)))].extend(dict(p) for p in pts)
            continue
        key = CurveKey.of_meta(RDMeta.from_json(doc.get("meta") or {}))
        groups[(curve_label(doc, f, group_by), key)].extend(file_points(doc, f))
    curves, keys, notes = name_curves(groups)
    for pts in curves.values():
        pts.sort(key=lambda p: p["bpp"])
    return curves, keys, notes


def load_points(paths: Iterable[str], group_by: Sequence[str] = ()) -> dict[str, list[dict[str, Any]]]:
    """curve label -> points, as ``load_curves`` groups them."""
    return load_curves(paths, group_by)[0]


__all__ = ["curve_label", "file_points", "find_rd_files", "is_summary", "load_curves", "load_points"]
