"""RD curves from run directories: group rd.json points, BD-rate vs an anchor and a reference, table, plot, W&B."""

from __future__ import annotations

import csv
import json
import math
import logging
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any, Sequence

from compresslab.rd.anchors import AnchorError, load_anchor
from compresslab.rd.bdrate import DEFAULT_METHOD, BDRules
from compresslab.rd.comparable import CurveKey, checked_bd_rate, require_metric
from compresslab.rd.points import (curve_label, file_points, find_rd_files, is_summary,  # noqa: F401
                                           load_curves, load_points)

log = logging.getLogger(__name__)

CONTEXT_ANCHORS = ("kodak/vtm", "kodak/hm", "kodak/jpeg", "kodak/compressai-bmshj2018-factorized_mse_cpu",
                   "kodak/compressai-bmshj2018-hyperprior_mse_cpu")


def summarize_runs(paths: Sequence[str], out_dir: str | os.PathLike, anchor: str = "kodak/vtm",
                   reference: str | Sequence[str] | None = None, method: str = DEFAULT_METHOD,
                   group_by: Sequence[str] = (), group: str | None = None, log_wandb: bool = False,
                   metric: str = "psnr-rgb", rules: BDRules | None = None,
                   allow_partial: bool = False) -> dict[str, Any]:
    """RD table, plot and summary.json for the curves under ``paths``: each curve's BD-rate vs ``anchor`` and vs each
    ``reference`` (a curve label or an anchor name; several give one pairwise column each), under ``rules`` (the
    defaults of rd.bdrate with ``method``, when not given). Curves are split by comparability key
    (rd.comparable); a comparison of curves measured differently is refused unless ``allow_partial``.
    Everything is checked before the output folder is made: a refused call leaves no folder behind."""
    rules = rules or BDRules(method=method)
    method = rules.method
    out = Path(out_dir)
    curves, keys, split_notes = load_curves(paths, group_by)
    if not curves:
        raise FileNotFoundError(f"no rd.json files found under {list(paths)}")
    require_metric(curves, metric)
    anc = load_anchor(anchor)
    anchor_curve, anchor_key = anc.curve(metric), CurveKey.of_anchor(anchor, anc.meta)
    references = [reference] if isinstance(reference, str) else list(reference or [])
    ref_curves = {r: _reference_points(r, curves, keys, metric) for r in references}
    out.mkdir(parents=True, exist_ok=True)
    for note in split_notes:
        print(note)
    rows = []
    for label, pts in sorted(curves.items()):
        rates, quals = [p["bpp"] for p in pts], [p[metric] for p in pts]
        names = [p.get("file") for p in pts]
        cmp = dict(test=keys[label], allow_partial=allow_partial, rules=rules, metric=metric, test_names=names)
        vs_anchor = checked_bd_rate(*anchor_curve, rates, quals, other=anchor_key, other_name=anchor, **cmp)
        row = {"curve": label, "evaluation": keys[label].evaluation(), "anchor_evaluation": anchor_key.evaluation(),
               "points": len(pts), "points_used": vs_anchor.n_test,  # after the monotone filter
               "bpp_range": f"{min(rates):.3f}-{max(rates):.3f}",
               "psnr_range": f"{min(quals):.2f}-{max(quals):.2f}",
               "bpp_ratio_real_est": _span([p["bpp_ratio"] for p in pts if "bpp_ratio" in p], "{:.4f}"),
               f"bd_rate_vs_{anchor}": vs_anchor.bd_rate, f"bd_psnr_vs_{anchor}": vs_anchor.bd_psnr,
               "overlap_vs_anchor_pct": None if vs_anchor.overlap is None else round(100 * vs_anchor.overlap, 1),
               "coverage_vs_anchor_pct": None if vs_anchor.coverage is None else round(100 * vs_anchor.coverage, 1),
               "anchor_points_in_overlap": vs_anchor.anchor_points_in_overlap,
               "anchor_note": vs_anchor.reason or "; ".join(vs_anchor.notes), "method": method}
        if vs_anchor.dropped_points:  # --monotone=drop: which points went
            row["dropped_vs_anchor"] = "; ".join(vs_anchor.dropped_points)
        for ref, (ref_pts, ref_key) in ref_curves.items():
            if label == ref or ref_pts is pts:  # a curve is not compared with itself
                continue
            vs_ref = checked_bd_rate([p["bpp"] for p in ref_pts], [p[metric] for p in ref_pts], rates, quals,
                                     other=ref_key, other_name=ref, anchor_names=[p.get("file") for p in ref_pts],
                                     **cmp)
            note = "reference_note" if len(references) == 1 else f"note_vs_{ref}"
            row.update({f"bd_rate_vs_{ref}": vs_ref.bd_rate, note: vs_ref.reason or "; ".join(vs_ref.notes)})
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
                      title=f"{dataset_title(anchor)} RD ({metric}, real bitstreams)\n"
                      f"{bd_caption(method, anchor, metric)}; λ of every point: summary.json")
    # The other quality axis as its own figure (MS-SSIM in dB beside a PSNR figure, and the reverse), when every
    # point carries it: a paper usually shows both panels.
    other = "ms-ssim-db-rgb" if metric == "psnr-rgb" else "psnr-rgb"
    second = None
    if all(other in p and math.isfinite(p[other]) for pts in curves.values() for p in pts):
        second = plot_curves(curves, out / f"rd_{other}.png", metric=other, context=context,
                             title=f"{dataset_title(anchor)} RD ({other}, real bitstreams)\n"
                             f"rd_table.md: {bd_caption(method, anchor, metric)}")
    summary = {"anchor": anchor, "anchor_meta": anc.meta, "method": method, "metric": metric,
               "bd_rules": asdict(rules), "allow_partial": allow_partial, "split_notes": split_notes, "rows": rows,
               "curve_keys": {label: key.as_dict() for label, key in keys.items()},
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


def _reference_points(reference: str, curves: dict[str, list[dict]], keys: dict[str, CurveKey],
                      metric: str) -> tuple[list[dict], CurveKey]:
    """A reference's points and comparability key: a curve label, one of the result files given (its path or its
    name without .json: `compresslab rd a.json b.json --reference a`), or an anchor name."""
    if reference in curves:
        return curves[reference], keys[reference]
    by_file = [label for label, pts in curves.items()
               if any(Path(p["file"]) == Path(reference) or Path(p["file"]).stem == reference for p in pts)]
    if len(by_file) == 1:
        return curves[by_file[0]], keys[by_file[0]]
    try:
        ra = load_anchor(reference)
    except AnchorError:
        raise ValueError(f"reference {reference!r} is neither a curve ({', '.join(sorted(curves))}), nor one of the "
                         f"files given, nor an anchor (compresslab anchors lists them)") from None
    return [{"bpp": b, metric: q} for b, q in zip(*ra.curve(metric))], CurveKey.of_anchor(reference, ra.meta)


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


# One colour per model in every figure (issue 30): a model's curve is this colour in each RD plot of the project,
# whichever other curves share the figure. Keyed by curve label (a "+LOF" curve takes its model's colour, dashed);
# a label not listed gets a colour from a hash of its name (stable across figures, from the colours left over).
MODEL_COLOURS: dict[str, str] = {
    "factorized": "#1f77b4", "hyperprior": "#ff7f0e", "msp": "#2ca02c", "adaptive": "#d62728",
    "adaptive-ideal": "#9467bd", "static (200 train crops)": "#8c564b", "static (leave-one-out)": "#e377c2",
    "mbt2018-mean": "#bcbd22", "ctx": "#17becf",
}
ANCHOR_COLOURS: dict[str, str] = {  # the dashed context curves (anchors), greys and muted tones
    "kodak/vtm": "#000000", "kodak/hm": "#555555", "kodak/jpeg": "#999999", "kodak/jpeg2000": "#b07aa1",
    "kodak/compressai-bmshj2018-factorized_mse_cpu": "#6baed6",
    "kodak/compressai-bmshj2018-hyperprior_mse_cpu": "#fdae6b",
}
_SPARE_COLOURS = ("#7f7f7f", "#aec7e8", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2", "#dbdb8d",
                  "#9edae5", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173")


def model_colour(label: str) -> str:
    """The colour of a curve in every figure: MODEL_COLOURS by its label (without " +LOF"), else a stable colour
    from its name."""
    import hashlib

    base = label.removesuffix(" +LOF")
    if base in MODEL_COLOURS:
        return MODEL_COLOURS[base]
    return _SPARE_COLOURS[int(hashlib.sha256(base.encode()).hexdigest(), 16) % len(_SPARE_COLOURS)]


def anchor_colour(name: str) -> str:
    dataset_free = name.split("/", 1)[-1]
    return ANCHOR_COLOURS.get(name) or ANCHOR_COLOURS.get(f"kodak/{dataset_free}") or model_colour(name)


# where a λ label may sit, in points from its point (tried in order; the first that collides with nothing wins)
_LABEL_OFFSETS = ((5, -10), (5, 4), (-5, 4), (-5, -10), (8, -18), (8, 12), (-8, 12), (-8, -18), (14, -3),
                  (-14, -3), (0, 18), (0, -24))


def bd_caption(method: str, anchor: str | None = None, metric: str = "psnr-rgb") -> str:
    """How the BD numbers of a figure were computed, for its title (a reader of the figure alone must know)."""
    how = {"akima": "Akima interpolation", "pchip": "PCHIP interpolation", "cubic": "cubic polynomial fit"}
    where = f" vs {anchor}" if anchor else ""
    return f"BD-rate{where} ({how.get(method, method)}, shared {metric} band)"


def rd_figure(curves: dict[str, list[dict[str, Any]]], metric: str = "psnr-rgb",
              context: Sequence[str] = CONTEXT_ANCHORS, title: str = "",
              legend_notes: dict[str, str] | None = None):
    """The one RD figure style, as a matplotlib Figure: our curves with markers, each in its model's fixed colour
    (``model_colour``), the context anchors dashed with small markers, BD numbers in the legend (``legend_notes``),
    and λ on the first and last point of each curve only where the label collides with no other label, the legend
    or the axes' edge (every point's λ is in summary.json)."""
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
            shown = (a.label if "compressai" not in name else
                     name.split("/")[-1].replace("compressai-", "zoo ").replace("_mse_cpu", ""))
            subset = CurveKey.of_anchor(name, a.meta)  # an anchor built on part of its set says so in the legend
            ax.plot(*zip(*sorted(keep)), "--", marker=".", ms=4, lw=1, alpha=0.7, color=anchor_colour(name),
                    label=f"{shown} ({subset.evaluation()})" if subset.partial else shown)
    notes = legend_notes or {}
    wanted = []  # (text, (x, y), colour): λ labels to place once the layout is fixed
    for label, pts in sorted(curves.items(), key=lambda kv: (kv[0].removesuffix(" +LOF"), kv[0].endswith(" +LOF"))):
        xs, ys = [p["bpp"] for p in pts], [p[metric] for p in pts]
        lof = label.endswith(" +LOF")
        colour = model_colour(label)
        ax.plot(xs, ys, marker="s" if lof else "o", ls="--" if lof else "-", lw=2, ms=5, color=colour,
                label=f"{label} ({notes[label]})" if label in notes else label)
        ends = [p for p in (pts[0], pts[-1]) if p.get("lmbda") is not None and metric in p]
        for p in ends[: 1 if len(pts) == 1 else 2]:
            wanted.append((f"λ={p['lmbda']:g}", (p["bpp"], p[metric]), colour))
    ax.set_xlim(0, max(1.5 * max_bpp, 0.3))
    ax.set_ylim(lo_q - 2, hi_q + 2)
    ax.set_xlabel("rate [bpp, real bitstream]")
    ax.set_ylabel({"psnr-rgb": "PSNR RGB [dB]", "ms-ssim-db-rgb": "MS-SSIM [dB]"}.get(metric, metric))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title(title, fontsize=8)
    fig.tight_layout()  # before the labels: they are placed in the final layout and nothing moves after
    _place_labels(fig, ax, wanted)
    return fig


def _place_labels(fig, ax, wanted) -> None:
    """Annotate each (text, xy, colour) at the first offset whose box overlaps no placed label, the legend, the
    markers of any curve, and stays inside the axes; a label with no free place is left out."""
    import numpy as np

    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    marker_px = 3.0 * fig.dpi / 72  # the curves' marker radius (ms=5 points) plus a little air, in pixels
    inside = ax.get_window_extent(renderer)
    legend = ax.get_legend()
    taken = [legend.get_window_extent(renderer)] if legend is not None else []
    markers = np.concatenate([ax.transData.transform(np.column_stack(line.get_data()))
                              for line in ax.get_lines() if len(line.get_xdata())] or [np.zeros((0, 2))])
    for text, xy, colour in wanted:
        for dx, dy in _LABEL_OFFSETS:
            ann = ax.annotate(text, xy, textcoords="offset points", xytext=(dx, dy), fontsize=6, color=colour,
                              ha="left" if dx >= 0 else "right", va="center", zorder=6)
            box = ann.get_window_extent(renderer).expanded(1.08, 1.15)
            near = box.padded(marker_px)  # a marker is a disc, not its centre
            free = (inside.x0 <= box.x0 and box.x1 <= inside.x1 and inside.y0 <= box.y0 and box.y1 <= inside.y1
                    and not any(box.overlaps(t) for t in taken)
                    and not ((markers[:, 0] > near.x0) & (markers[:, 0] < near.x1) & (markers[:, 1] > near.y0)
                             & (markers[:, 1] < near.y1)).any())
            if free:
                taken.append(box)
                break
            ann.remove()


def plot_curves(curves: dict[str, list[dict[str, Any]]], path: Path, metric: str = "psnr-rgb",
                context: Sequence[str] = CONTEXT_ANCHORS, title: str = "",
                legend_notes: dict[str, str] | None = None) -> Path:
    """``rd_figure`` saved as PNG and a vector PDF beside it (sweeps, `rd`, reproductions)."""
    import matplotlib.pyplot as plt

    fig = rd_figure(curves, metric=metric, context=context, title=title, legend_notes=legend_notes)
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
