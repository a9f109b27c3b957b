"""Assemble the report: one HTML file, plotly.js inlined once (the first figure carries it, the others reuse it), so
the page opens from disk or an e-mail attachment with no network; or, for pages committed side by side, loaded from
one shared copy by relative path (``shared_js``). Written atomically, never over an existing file unless asked."""

from __future__ import annotations

import html
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from compresslab.rd.bdrate import BDRules
from compresslab.reporting.output import atomic_write_text, check_output, shared_plotly_js
from compresslab.reporting.sources import Sources

CSS = """body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:.5em 0;font-size:13px}td,th{border:1px solid #ccc;padding:2px 6px;
text-align:right}caption{text-align:left;font-size:13px;color:#555}td.refused{color:#a33;text-align:left;
max-width:22em}tr.pruned{color:#888}tr.fail{color:#a33}nav a{margin-right:1em}.note{color:#666;font-size:13px}
details{margin:.3em 0}pre{font-size:12px;white-space:pre-wrap}h2{border-bottom:1px solid #ddd;margin-top:1.6em}"""


@dataclass
class CropSpec:
    image: Path                          # the image whose crops are compared
    size: int = 160                      # crop side in pixels
    at: tuple[int, int] | None = None    # top-left corner; None: the centre


@dataclass
class Page:
    title: str
    sections: list[tuple[str, str, list[str]]] = field(default_factory=list)  # (id, heading, html parts)
    plotly_js: str | None = None  # a relative URL of plotly.min.js to load; None: inline it
    _js_inlined: bool = False

    def figure(self, fig: Any, div_id: str, post_script: str | None = None) -> str:
        """The figure as a <div> + script; plotly.js itself (or its <script src>) goes into the first one only."""
        import plotly.io as pio

        include: bool | str = False if self._js_inlined else (self.plotly_js or True)
        out = pio.to_html(fig, full_html=False, include_plotlyjs=include, div_id=div_id,
                          config={"displaylogo": False, "responsive": True}, post_script=post_script)
        self._js_inlined = True
        return out

    def render(self) -> str:
        nav = " ".join(f'<a href="#{sid}">{html.escape(h)}</a>' for sid, h, _ in self.sections)
        body = "\n".join(f'<section id="{sid}"><h2>{html.escape(h)}</h2>\n' + "\n".join(parts) + "</section>"
                         for sid, h, parts in self.sections)
        return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(self.title)}'
                f"</title><style>{CSS}</style></head><body><h1>{html.escape(self.title)}</h1><nav>{nav}</nav>\n"
                f"{body}\n</body></html>\n")


def build(src: Sources, title: str, anchor: str = "kodak/vtm", rules: BDRules | None = None,
          allow_partial: bool = False, crops: CropSpec | None = None, plotly_js: str | None = None) -> Page:
    from compresslab.rd.curves import context_anchors, dataset_title, load_points

    from compresslab.reporting import per_image, rd_section, training_section

    page = Page(title, plotly_js=plotly_js)
    if src.rd_files:
        labels = load_points([str(f) for f in src.rd_files])  # the curve names, to be the matrix's columns
        anchors = list(dict.fromkeys([anchor, *context_anchors(anchor)]))
        matrices = rd_section.bd_matrices(src.rd_files, anchor, rules or BDRules(), allow_partial=allow_partial,
                                          references=[*sorted(labels), *[a for a in anchors if a != anchor]])
        curves = next(iter(matrices.values()))["curves"]  # the plot draws the very curves the matrix compares
        bands = {m: rd_section.anchor_bands(summary) for m, summary in matrices.items()}
        fig = rd_section.rd_figure(curves, anchors, f"{dataset_title(anchor)} RD (real bitstreams)", bands)
        page.sections.append(("rd", "RD curves", [
            '<p class="note">Buttons switch the quality axis. Hover a point for its run, λ, step, commit and '
            "real/estimated bpp; click a point for its run's per-image table, a legend entry to hide a curve. "
            f"Shaded: each curve's shared quality band with {html.escape(anchor)} (where its BD-rate is measured); "
            f"the {html.escape(anchor)} points inside a band are drawn larger.</p>",
            page.figure(fig, "rd-plot", post_script=rd_section.CLICK_TO_TABLE)]))
        page.sections.append(("bd", "BD-rate matrix", [rd_section.bd_table_html(s, anchor)
                                                       for s in matrices.values()]))
        page.sections.append(("per-image", "Per-image results", [per_image.per_image_html(src.rd_files)]))
        if crops is not None:
            from compresslab.reporting.crops import crops_html, make_crops

            page.sections.append(("crops", f"Decoded crops: {crops.image.name}", [
                crops_html(make_crops(src.rd_files, crops.image, crops.size, crops.at))]))
    if src.metrics:
        page.sections.append(("training", "Training curves", [
            page.figure(training_section.training_figure(src.metrics), "training-plot")]))
    if src.live:
        page.sections.append(("live", "Live RD trajectory", [
            page.figure(training_section.live_figure(src.live), "live-plot")]))
    for n, folder in enumerate(src.reproductions):
        from compresslab.reporting.reproduction import reproduction_html

        title, body = reproduction_html(folder)
        page.sections.append((f"reproduction-{n}", title, [body]))
    for n, spec in enumerate(src.studies):
        parts = _study_parts(page, spec, n)
        page.sections.append((f"study-{n}", f"Optuna study: {spec}", parts))
    return page


def _study_parts(page: Page, spec: str, n: int) -> list[str]:
    from compresslab.reporting.optuna_section import open_any, study_figures, trials_html

    study = open_any(spec)
    parts = []
    for i, (title, fig) in enumerate(study_figures(study)):
        parts.append(f"<h3>{html.escape(title)}</h3>")
        parts.append(page.figure(fig, f"study-{n}-{i}") if not isinstance(fig, str)
                     else f'<p class="note">{html.escape(fig)}</p>')
    parts.append(trials_html(study, spec))
    return parts


def write(page: Page, out: Path, force: bool) -> tuple[Path, int]:
    check_output(out, force)
    return out, atomic_write_text(out, page.render(), force)


def report(inputs: Sequence[str], out: str | os.PathLike, force: bool = False, anchor: str = "kodak/vtm",
           title: str | None = None, rules: BDRules | None = None, allow_partial: bool = False,
           crops: CropSpec | None = None, watch: bool = False, interval: float = 2.0,
           refresh_s: int = 30, shared_js: str | os.PathLike | None = None) -> tuple[Path, int, Page | None]:
    """Build and write the page once; with ``watch``, rebuild it at every change of the inputs' files until
    Ctrl-C (then (path, 0, None)). ``shared_js``: a folder holding (or given) plotly-<version>.min.js, which the
    page loads by relative path instead of inlining it."""
    from compresslab.reporting.sources import gather

    out = Path(out)
    check_output(out, force)
    plotly_js = shared_plotly_js(Path(shared_js), out) if shared_js is not None else None
    if crops is not None and not crops.image.is_file():
        raise FileNotFoundError(f"--crops {crops.image}: no such image file (e.g. $COMPRESSLAB_DATA/kodak/kodim23.png)")
    title = title or f"CompressLab report: {', '.join(inputs)}"

    def make() -> Page:
        return build(gather(inputs), title, anchor=anchor, rules=rules, allow_partial=allow_partial, crops=crops,
                     plotly_js=plotly_js)

    if watch:
        from compresslab.reporting import watch as w

        w.watch(inputs, out, lambda: w.auto_refresh(make().render(), refresh_s), title, interval, refresh_s)
        return out, 0, None
    page = make()
    path, size = write(page, out, force)
    return path, size, page
