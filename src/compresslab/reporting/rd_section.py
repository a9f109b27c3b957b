"""The RD section: our curves beside the anchors they are compared with (bpp vs PSNR, switchable to MS-SSIM dB), and
the BD-rate matrix. Every BD number comes from ``rd.curves.summarize_runs``, the code behind `compresslab rd`,
so the page and the command cannot disagree; this module only draws and tabulates what it returns."""

from __future__ import annotations

import contextlib
import html
import io
import json
import math
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:
    from compresslab.rd.bdrate import BDRules

METRICS = {"psnr-rgb": "PSNR-RGB (dB)", "ms-ssim-db-rgb": "MS-SSIM-RGB (dB, -10 log10(1 - MS-SSIM))"}
BUTTONS = {"psnr-rgb": "PSNR", "ms-ssim-db-rgb": "MS-SSIM (dB)"}


def _commit_of(file: str | None, cache: dict[str, str]) -> str:
    """The commit that produced a result file: its meta.commit, else its run's entry in the results folder's
    runs/index.json (published runs keep it there), else ''."""
    if not file or not Path(file).is_file():
        return ""
    if file not in cache:
        from compresslab.evaluation.results import ResultFileError, RDResult

        try:
            commit = RDResult.read(file).meta.commit or ""
        except ResultFileError:
            commit = ""
        index = Path(file).parent.parent / "index.json"
        if not commit and index.is_file():
            try:
                runs = json.loads(index.read_text()).get("runs") or []
            except (OSError, ValueError):
                runs = []
            commit = next((str(r.get("commit") or "") for r in runs if r.get("run") == Path(file).parent.name), "")
        cache[file] = commit
    return cache[file]


def _value(p: dict[str, Any], key: str) -> float | None:
    v = p.get(key)
    return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None


BAND = re.compile(r"band \[([-+0-9.]+), ([-+0-9.]+)\]")  # BDResult.line's statement of the shared quality band


def anchor_bands(summary: dict[str, Any]) -> list[tuple[str, float, float]]:
    """(curve, low, high) of each curve's shared quality band with the anchor, as summarize_runs's line for the curve
    states it (to 2 decimals); curves without a BD-rate have none."""
    out = []
    for row in summary.get("rows") or []:
        m = BAND.search(str(row.get("line") or ""))
        if m:
            out.append((row["curve"], float(m.group(1)), float(m.group(2))))
    return out


def rd_figure(curves: dict[str, list[dict[str, Any]]], anchors: Sequence[str], title: str,
              bands: dict[str, list[tuple[str, float, float]]] | None = None):
    """One Scatter per curve, then one per anchor, with a button pair switching every trace's y values and the
    y-axis title between the metrics of METRICS (Plotly's own updatemenus: no script of ours). ``bands``: per
    metric, each curve's BD band with the first anchor, shaded in the curve's colour; that anchor's points inside
    a band are drawn larger (the points the BD-rate rests on)."""
    import plotly.graph_objects as go

    from compresslab.rd.anchors import AnchorError, load_anchor
    from compresslab.rd.curves import anchor_colour, model_colour

    fig = go.Figure()
    ys: dict[str, list[list[float | None]]] = {m: [] for m in METRICS}
    commits: dict[str, str] = {}
    for label, pts in sorted(curves.items()):
        custom = [[Path(str(p.get("file") or "")).parent.name or str(p.get("file") or ""),
                   "" if p.get("lmbda") is None else f"{p['lmbda']:g}", "" if p.get("step") is None else p["step"],
                   _commit_of(p.get("file"), commits)[:10],
                   "" if _value(p, "bpp_ratio") is None else f"{p['bpp_ratio']:.4f}", str(p.get("file") or "")]
                  for p in pts]
        for m in METRICS:
            ys[m].append([_value(p, m) for p in pts])
        fig.add_trace(go.Scatter(
            x=[p["bpp"] for p in pts], y=ys["psnr-rgb"][-1], name=label, mode="lines+markers", customdata=custom,
            line={"color": model_colour(label), "dash": "dash" if label.endswith("+LOF") else "solid"},
            hovertemplate=(f"<b>{html.escape(label)}</b><br>run %{{customdata[0]}}<br>λ %{{customdata[1]}}, step "
                           "%{customdata[2]}<br>commit %{customdata[3]}<br>%{x:.4f} bpp (real/estimated "
                           "%{customdata[4]})<br>%{y:.3f}<extra></extra>")))
    for name in anchors:
        try:
            a = load_anchor(name)
            rates, _ = a.curve("psnr-rgb")
        except AnchorError:
            continue  # an anchor this data root lacks is no context; the BD matrix names what it compared with
        for m in METRICS:
            try:
                ys[m].append(a.curve(m)[1])
            except AnchorError:
                ys[m].append([None] * len(rates))
        fig.add_trace(go.Scatter(x=rates, y=ys["psnr-rgb"][-1], name=name, mode="lines+markers",
                                 marker={"size": 4}, line={"color": anchor_colour(name), "dash": "dot"},
                                 hovertemplate=f"<b>{html.escape(name)}</b> (anchor)<br>%{{x:.4f}} bpp<br>%{{y:.3f}}"
                                               "<extra></extra>"))
    bands = bands or {}
    n_curves = len(curves)
    shapes = {m: [{"type": "rect", "xref": "paper", "x0": 0, "x1": 1, "yref": "y", "y0": lo, "y1": hi,
                   "fillcolor": model_colour(label), "opacity": 0.06, "line": {"width": 0}, "layer": "below",
                   "name": f"BD band {label}"} for label, lo, hi in bands.get(m, [])] for m in METRICS}
    sizes = {}
    for m in METRICS:
        sizes[m] = [6] * n_curves + [4] * (len(ys[m]) - n_curves)
        if len(ys[m]) > n_curves:  # the BD anchor's points inside any band, larger
            sizes[m][n_curves] = [9 if q is not None and any(lo - 0.005 <= q <= hi + 0.005 for _, lo, hi in
                                                                 bands.get(m, [])) else 4 for q in ys[m][n_curves]]
    buttons = [{"label": BUTTONS[m], "method": "update",
                "args": [{"y": ys[m], "marker.size": sizes[m]}, {"yaxis.title.text": label, "shapes": shapes[m]}]}
               for m, label in METRICS.items()]
    for trace, size in zip(fig.data, sizes["psnr-rgb"]):
        trace.marker.size = size
    fig.update_layout(shapes=shapes["psnr-rgb"])
    fig.update_layout(title=title, xaxis_title="bpp (real bitstreams)", yaxis_title=METRICS["psnr-rgb"],
                      hovermode="closest", height=560, template="plotly_white",
                      updatemenus=[{"type": "buttons", "direction": "right", "buttons": buttons, "showactive": True,
                                    "x": 0.0, "xanchor": "left", "y": 1.12, "yanchor": "top"}])
    return fig


# Clicking a point opens its run's per-image table (per_image.py tags each table with its file): Plotly's own click
# event, a few lines run after the figure is drawn ({plot_id} is filled in by plotly.io.to_html).
CLICK_TO_TABLE = """document.getElementById('{plot_id}').on('plotly_click', function (ev) {
  var file = ev.points[0].customdata && ev.points[0].customdata[5];
  var table = file && document.querySelector('details.per-image[data-file="' + CSS.escape(file) + '"]');
  if (table) { table.open = true; table.scrollIntoView(); }
});"""


def bd_matrices(rd_files: Sequence[Path], anchor: str, rules: "BDRules", references: Sequence[str],
                metrics: Sequence[str] = tuple(METRICS), allow_partial: bool = False) -> dict[str, dict[str, Any]]:
    """metric -> summarize_runs's summary (rows, curves) and the lines it printed, for every curve vs the anchor and
    vs each reference; written to a scratch folder that is thrown away (the page is the product here). The first
    metric must succeed (its refusal is the user's one-line error); a later one the files cannot give (no MS-SSIM)
    becomes a note in place of its matrix."""
    from compresslab.rd.anchors import AnchorError, load_anchor
    from compresslab.rd.curves import summarize_runs

    out: dict[str, dict[str, Any]] = {}
    for metric in metrics:
        refs = []
        for r in references:  # an anchor without this metric cannot be a column of this matrix
            try:
                load_anchor(r).curve(metric)
            except AnchorError:
                if "/" in r:
                    continue
            refs.append(r)
        printed = io.StringIO()
        try:
            with tempfile.TemporaryDirectory(prefix="compresslab-report-") as tmp, contextlib.redirect_stdout(printed):
                summary = summarize_runs([str(f) for f in rd_files], out_dir=tmp, anchor=anchor, reference=refs,
                                         rules=rules, metric=metric, allow_partial=allow_partial)
        except (ValueError, AnchorError) as e:
            if not out:
                raise
            out[metric] = {"metric": metric, "unavailable": str(e)}
            continue
        out[metric] = {**summary, "references": refs, "printed": printed.getvalue().splitlines()}
    return out


def _cell(row: dict[str, Any], ref: str, anchor: str, n_refs: int) -> tuple[str, str]:
    """(text, title) of one matrix cell: the BD-rate, or 'refused' with summarize_runs's reason."""
    if ref == anchor:
        value, note = row.get(f"bd_rate_vs_{anchor}"), row.get("anchor_note") or ""
        extra = f" ({row.get('anchor_points_in_overlap')} anchor pts in band, {row.get('points_used')} used)"
    else:
        if f"bd_rate_vs_{ref}" not in row:
            return "–", "the curve itself"
        value = row.get(f"bd_rate_vs_{ref}")
        note = row.get("reference_note" if n_refs == 1 else f"note_vs_{ref}") or ""
        extra = ""
    if isinstance(value, (int, float)) and math.isfinite(value):
        return f"{value:+.2f} %{extra}", note
    short = note if len(note) <= 90 else note.split(":")[0][:90] + " … (hover for the points)"
    return f"refused: {short or 'no number'}", note  # the whole reason in the cell's title


def bd_table_html(summary: dict[str, Any], anchor: str) -> str:
    if "unavailable" in summary:
        return f'<p class="note">No {summary["metric"]} matrix: {html.escape(summary["unavailable"])}</p>'
    refs = [anchor] + [r for r in summary["references"] if r != anchor]
    n_refs = len(summary["references"])
    head = "".join(f"<th>vs {html.escape(r)}</th>" for r in refs)
    body = []
    for row in summary["rows"]:
        cells = []
        for r in refs:
            text, title = _cell(row, r, anchor, n_refs)
            cls = "refused" if text.startswith("refused") else ""
            cells.append(f'<td class="bd {cls}" data-curve="{html.escape(row["curve"])}" data-ref="{html.escape(r)}" '
                         f'title="{html.escape(title)}">{html.escape(text)}</td>')
        body.append(f"<tr><th>{html.escape(row['curve'])}</th><td>{row['points']}</td>{''.join(cells)}</tr>")
    caption = (f"BD-rate (%) of each curve (row) vs each reference (column), {summary['metric']}, method "
               f"{summary['method']}; negative = fewer bits at equal quality. Refused cells give the reason.")
    lines = "\n".join(html.escape(x) for x in summary["printed"])
    return (f'<table class="bd-matrix" data-metric="{summary["metric"]}"><caption>{html.escape(caption)}</caption>'
            f"<tr><th>curve</th><th>points</th>{head}</tr>{''.join(body)}</table>"
            f"<details><summary>the lines <code>compresslab rd</code> prints</summary><pre>{lines}</pre></details>")
