"""Training curves per run (loss, bpp, PSNR, learning rate over steps, from Lightning's metrics.csv) and the live RD
trajectory (rd_live.jsonl: one real-bitstream RD point per evaluation step) drawn on the RD plane."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

# panel title -> the metrics.csv columns drawn in it (the first present of each pair: train, then validation)
PANELS = {"loss": ("train/loss", "val/loss"), "bpp": ("train/bpp", "val/bpp"),
          "PSNR (dB)": ("train/psnr", "val/psnr"), "learning rate": ("lr",)}


def read_metrics(path: Path) -> dict[str, list[tuple[int, float]]]:
    """column -> (step, value) for every row where the column has a value (Lightning writes one sparse row per
    logging call)."""
    try:
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise ValueError(f"{path}: not readable as a metrics.csv ({e})") from None
    series: dict[str, list[tuple[int, float]]] = {}
    for row in rows:
        try:
            step = int(float(row.get("step") or ""))
        except ValueError:
            continue
        for k, v in row.items():
            if k in ("step", "epoch") or not v:
                continue
            try:
                val = float(v)
            except ValueError:
                continue
            if math.isfinite(val):
                series.setdefault(k, []).append((step, val))
    return series


def training_figure(metrics: dict[str, Path]):
    import plotly.graph_objects as go
    from plotly.colors import qualitative
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=2, cols=2, subplot_titles=list(PANELS), horizontal_spacing=0.08, vertical_spacing=0.12)
    for i, (run, path) in enumerate(sorted(metrics.items())):
        series = read_metrics(path)
        colour = qualitative.Plotly[i % len(qualitative.Plotly)]
        first = True
        for j, (panel, cols) in enumerate(PANELS.items()):
            for col in cols:
                if col not in series:
                    continue
                steps, values = zip(*series[col])
                fig.add_trace(go.Scatter(x=steps, y=values, mode="lines+markers" if len(steps) < 30 else "lines",
                                         name=run, legendgroup=run, showlegend=first, line={"color": colour,
                                         "dash": "dot" if col.startswith("val/") else "solid"},
                                         hovertemplate=f"{run}<br>{col}<br>step %{{x}}: %{{y:.5g}}<extra></extra>"),
                              row=j // 2 + 1, col=j % 2 + 1)
                first = False
    fig.update_xaxes(title_text="step")
    fig.update_yaxes(type="log", row=2, col=2)
    fig.update_layout(height=620, template="plotly_white", title="Training curves (solid: train, dotted: validation)")
    return fig


def read_live(path: Path) -> list[dict]:
    """The RD points of an rd_live.jsonl; a last line without its newline that does not parse is being written by
    a running training and is left for the next report, any other bad line is refused naming it."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not readable ({e})") from None
    lines = text.split("\n")
    points = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            p = json.loads(line)
        except ValueError:
            if n == len(lines):  # no newline after it yet: the writer is mid-line
                continue
            raise ValueError(f"{path}:{n}: not a JSON line ({line[:60]!r}); fix or remove the line") from None
        if isinstance(p, dict) and isinstance(p.get("bpp"), (int, float)):
            points.append(p)
    return points


def live_figure(live: dict[str, Path]):
    import plotly.graph_objects as go

    fig = go.Figure()
    for run, path in sorted(live.items()):
        pts = read_live(path)
        fig.add_trace(go.Scatter(x=[p["bpp"] for p in pts], y=[p.get("psnr-rgb") for p in pts], name=run,
                                 mode="lines+markers", customdata=[p.get("step") for p in pts],
                                 hovertemplate=f"{run}<br>step %{{customdata}}<br>%{{x:.4f}} bpp, %{{y:.2f}} dB"
                                               "<extra></extra>"))
    fig.update_layout(title="Live RD trajectory during training (rd_live.jsonl, real bitstreams on the eval crops)",
                      xaxis_title="bpp", yaxis_title="PSNR-RGB (dB)", height=520, template="plotly_white")
    return fig
