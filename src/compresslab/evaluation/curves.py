"""RD curves from run directories: group rd.json points, BD-rate vs an anchor and a reference, table, plot, W&B."""

from __future__ import annotations

import csv
import glob
import json
import math
import logging
import os
from collections import defaultdict
from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterable, Sequence

from compresslab.evaluation.anchors import AnchorError, load_anchor
from compresslab.evaluation.bdrate import DEFAULT_METHOD, BDRules, bd_rate
from compresslab.evaluation.quality import with_derived_metrics
from compresslab.evaluation.results import RDMeta, RDResult

log = logging.getLogger(__name__)

CONTEXT_ANCHORS = ("kodak/vtm", "kodak/hm", "kodak/jpeg", "kodak/compressai-bmshj2018-factorized_mse_cpu",
                   "kodak/compressai-bmshj2018-hyperprior_mse_cpu")


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


def load_points(paths: Iterable[str], group_by: Sequence[str] = ()) -> dict[str, list[dict[str, Any]]]:
    """curve label -> points (all points of every result file). Curves are grouped by model name (+ config keys in group_by,
    read from the run's meta, e.g. ``model.N``); LOF results (rd_lof.json) form their own curves."""
    curves: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for f in find_rd_files(paths):
        doc = json.loads(f.read_text())
        curves[curve_label(doc, f, group_by)].extend(file_points(doc, f))
    for pts in curves.values():
        pts.sort(key=lambda p: p["bpp"])
    return dict(curves)


def summarize_runs(paths: Sequence[str], out_dir: str | os.PathLike, anchor: str = "kodak/vtm",
                   reference: str | Sequence[str] | None = None, method: str = DEFAULT_METHOD,
                   group_by: Sequence[str] = (), group: str | None = None, log_wandb: bool = False,
                   metric: str = "psnr-rgb", rules: BDRules | None = None) -> dict[str, Any]:
    """RD table, plot and summary.json for the curves under ``paths``: each curve's BD-rate vs ``anchor`` and vs each
    ``reference`` (a curve label or an anchor name; several give one pairwise column each), under ``rules`` (the
    defaults of evaluation.bdrate with ``method``, when not given)."""
    rules = rules or BDRules(method=method)
    method = rules.method
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    curves = load_points(paths, group_by)
    if not curves:
        raise FileNotFoundError(f"no rd.json files found under {list(paths)}")
    anc = load_anchor(anchor)
    references = [reference] if isinstance(reference, str) else list(reference or [])
    ref_curves = {r: _reference_points(r, curves, metric) for r in references}
    rows = []
    for label, pts in sorted(curves.items()):
        rates, quals = [p["bpp"] for p in pts], [p[metric] for p in pts]
        names = [p.get("file") for p in pts]
        vs_anchor = bd_rate(*anc.curve(metric), rates, quals, rules=rules, metric=metric, test_names=names)
        row = {"curve": label, "points": len(pts), "points_used": vs_anchor.n_test,  # after the monotone filter
               "bpp_range": f"{min(rates):.3f}-{max(rates):.3f}",
               "psnr_range": f"{min(quals):.2f}-{max(quals):.2f}",
               "bpp_ratio_real_est": _span([p["bpp_ratio"] for p in pts if "bpp_ratio" in p], "{:.4f}"),
               f"bd_rate_vs_{anchor}": vs_anchor.bd_rate, f"bd_psnr_vs_{anchor}": vs_anchor.bd_psnr,
               "overlap_vs_anchor_pct": None if vs_anchor.overlap is None else round(100 * vs_anchor.overlap, 1),
               "coverage_vs_anchor_pct": None if vs_anchor.coverage is None else round(100 * vs_anchor.coverage, 1),
               "anchor_points_in_overlap": vs_anchor.anchor_points_in_overlap,
               "anchor_note": vs_anchor.reason, "method": method}
        if vs_anchor.dropped_points:  # --monotone=drop: which points went
            row["dropped_vs_anchor"] = "; ".join(vs_anchor.dropped_points)
        for ref, ref_pts in ref_curves.items():
            if label == ref or ref_pts is pts:  # a curve is not compared with itself
                continue
            vs_ref = bd_rate([p["bpp"] for p in ref_pts], [p[metric] for p in ref_pts], rates, quals, rules=rules,
                             metric=metric, anchor_names=[p.get("file") for p in ref_pts], test_names=names)
            note = "reference_note" if len(references) == 1 else f"note_vs_{ref}"
            row.update({f"bd_rate_vs_{ref}": vs_ref.bd_rate, note: vs_ref.reason})
        if len(pts) == 1:  # a single run is a point, not a curve: say what it is and how to get a BD-rate
            p = pts[0]
            row["line"] = (f"{label}: one RD point ({p['bpp']:.4f} bpp, {metric} {p[metric]:.2f}); BD-rate vs {anchor} "
                           f"needs a curve of >= 4 lambdas (python train.py -m ... lambda=a,b,c,d)")
        else:
            row["line"] = f"{label}: {vs_anchor.line(metric)} vs {anchor}"
        rows.append(row)
        print(row["line"])

    _write_table(rows, out)
    notes = {r["curve"]: f"BD {r[f'bd_rate_vs_{anchor}']:+.1f} % vs {anchor}" for r in rows
             if isinstance(r.get(f"bd_rate_vs_{anchor}"), float) and math.isfinite(r[f"bd_rate_vs_{anchor}"])}
    context = context_anchors(anchor)
    png = plot_curves(curves, out / "rd.png", metric=metric, legend_notes=notes, context=context,
                      title=f"{dataset_title(anchor)} RD ({metric}); BD-rate vs {anchor}, "
                      f"{method}")
    # The other quality axis as its own figure (MS-SSIM in dB beside a PSNR figure, and the reverse), when every
    # point carries it: a paper usually shows both panels.
    other = "ms-ssim-db-rgb" if metric == "psnr-rgb" else "psnr-rgb"
    second = None
    if all(other in p and math.isfinite(p[other]) for pts in curves.values() for p in pts):
        second = plot_curves(curves, out / f"rd_{other}.png", metric=other, context=context,
                             title=f"{dataset_title(anchor)} RD ({other}); BD-rates in rd_table.md are in {metric}")
    summary = {"anchor": anchor, "anchor_meta": anc.meta, "method": method, "metric": metric,
               "bd_rules": asdict(rules), "rows": rows,
               "curves": curves, "plot": str(png), "second_plot": str(second) if second else None}
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    if log_wandb:
        _log_wandb(summary, out, group)
    return summary


def context_anchors(anchor: str) -> tuple[str, ...]:
    """The dashed context curves of a figure, from the anchor's own dataset (CLIC curves beside CLIC results)."""
    dataset = anchor.split("/")[0] if "/" in anchor else "kodak"
    return tuple(f"{dataset}/{name.split('/', 1)[1]}" for name in CONTEXT_ANCHORS)


def dataset_title(anchor: str) -> str:
    """The evaluation set a figure shows, from its anchor's name (kodak/vtm -> Kodak, clic2020-mobile/vtm -> ...)."""
    name = anchor.split("/")[0] if "/" in anchor else "Kodak"
    return {"kodak": "Kodak", "clic2020-professional": "CLIC 2020 professional",
            "clic2020-mobile": "CLIC 2020 mobile", "tecnick": "Tecnick"}.get(name, name)


def _reference_points(reference: str, curves: dict[str, list[dict]], metric: str) -> list[dict]:
    """A reference is a curve label, one of the result files given (its path or its name without .json: `compresslab
    rd a.json b.json --reference a`), or an anchor name."""
    if reference in curves:
        return curves[reference]
    by_file = [label for label, pts in curves.items()
               if any(Path(p["file"]) == Path(reference) or Path(p["file"]).stem == reference for p in pts)]
    if len(by_file) == 1:
        return curves[by_file[0]]
    try:
        ra = load_anchor(reference)
    except AnchorError:
        raise ValueError(f"reference {reference!r} is neither a curve ({', '.join(sorted(curves))}), nor one of the "
                         f"files given, nor an anchor (compresslab anchors lists them)") from None
    return [{"bpp": b, metric: q} for b, q in zip(*ra.curve(metric))]


def _span(values: list[float], fmt: str) -> str:
    """min-max of a per-point quantity (real/estimated bpp: every point should be inside [1.000, 1.010])."""
    if not values:
        return "n/a (anchor)"
    lo, hi = min(values), max(values)
    return fmt.format(lo) if lo == hi else f"{fmt.format(lo)}-{fmt.format(hi)}"


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:+.2f}" if abs(v) < 1e4 else f"{v:.3g}"
    return "" if v is None else str(v)


def _write_table(rows: list[dict[str, Any]], out: Path) -> None:
    keys = [k for k in rows[0] if k != "line"]
    for r in rows[1:]:
        keys += [k for k in r if k not in keys and k != "line"]
    with (out / "rd_table.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(_fmt(r.get(k)) for k in keys) + " |" for r in rows]
    (out / "rd_table.md").write_text("\n".join(lines) + "\n")


def plot_curves(curves: dict[str, list[dict[str, Any]]], path: Path, metric: str = "psnr-rgb",
                context: Sequence[str] = CONTEXT_ANCHORS, title: str = "",
                legend_notes: dict[str, str] | None = None) -> Path:
    """The one RD figure style (sweeps, `rd`, reproductions): our curves with markers and λ labels, the context
    anchors dashed with small markers, BD numbers in the legend (``legend_notes``); PNG and a vector PDF beside it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5), dpi=150)
    max_bpp = max(p["bpp"] for pts in curves.values() for p in pts)
    lo_q = min(p[metric] for pts in curves.values() for p in pts if metric in p)
    hi_q = max(p[metric] for pts in curves.values() for p in pts if metric in p)
    for name in context:
        try:
            a = load_anchor(name)
            r, q = a.curve(metric)
        except AnchorError:
            continue
        keep = [(b, v) for b, v in zip(r, q) if b <= max(1.5 * max_bpp, 0.3)]
        if keep:
            ax.plot(*zip(*sorted(keep)), "--", marker=".", ms=4, lw=1, alpha=0.7,
                    label=a.label if "compressai" not in name else
                    name.split("/")[-1].replace("compressai-", "zoo ").replace("_mse_cpu", ""))
    notes = legend_notes or {}
    colours: dict[str, str] = {}  # a "+LOF" curve takes its base curve's colour, dashed, so pairs read as pairs
    for label, pts in sorted(curves.items(), key=lambda kv: (kv[0].removesuffix(" +LOF"), kv[0].endswith(" +LOF"))):
        xs, ys = [p["bpp"] for p in pts], [p[metric] for p in pts]
        base = label.removesuffix(" +LOF")
        style = dict(color=colours[base], ls="--", marker="s") if label != base and base in colours else {}
        line, = ax.plot(xs, ys, **{"marker": "o", "ls": "-", "lw": 2, "ms": 5, **style},
                        label=f"{label} ({notes[label]})" if label in notes else label)
        colours.setdefault(base, line.get_color())
        for p in pts:
            if p.get("lmbda") is not None:
                ax.annotate(f"λ={p['lmbda']:g}", (p["bpp"], p[metric]), textcoords="offset points", xytext=(4, -9),
                            fontsize=6, color=line.get_color())
    ax.set_xlim(0, max(1.5 * max_bpp, 0.3))
    ax.set_ylim(lo_q - 2, hi_q + 2)
    ax.set_xlabel("rate [bpp, real bitstream]")
    ax.set_ylabel({"psnr-rgb": "PSNR RGB [dB]", "ms-ssim-db-rgb": "MS-SSIM [dB]"}.get(metric, metric))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    fig.savefig(Path(path).with_suffix(".pdf"))
    plt.close(fig)
    return path


def _log_wandb(summary: dict[str, Any], out: Path, group: str | None) -> None:
    try:
        import wandb

        from compresslab.wandb_mode import wandb_mode

        wandb_mode()
        run = wandb.init(project="compresslab", group=group, job_type="rd-report", name=f"rd-{group or out.name}",
                         dir=str(out), config={"anchor": summary["anchor"], "method": summary["method"]})
        cols = [k for k in summary["rows"][0] if k != "line"]
        table = wandb.Table(columns=cols, data=[[r.get(c) for c in cols] for r in summary["rows"]])
        points = wandb.Table(columns=["curve", "bpp", summary["metric"], "lambda"],
                             data=[[c, p["bpp"], p[summary["metric"]], p.get("lmbda")]
                                   for c, pts in summary["curves"].items() for p in pts])
        run.log({"rd/table": table, "rd/points": points, "rd/plot": wandb.Image(summary["plot"])})
        for r in summary["rows"]:
            run.summary[f"bd_rate/{r['curve']}"] = r[f"bd_rate_vs_{summary['anchor']}"]
        run.finish()
    except Exception as e:  # noqa: BLE001 - the files are written already; W&B is a mirror
        log.warning("W&B report failed: %s", e)
