"""Per-image results of every rd.json: bpp, PSNR, MS-SSIM, encode/decode time per image, one table per run."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Sequence

COLUMNS = (("name", "image", "{}"), ("bpp", "bpp", "{:.4f}"), ("psnr-rgb", "PSNR (dB)", "{:.3f}"),
           ("ms-ssim-rgb", "MS-SSIM", "{:.5f}"), ("ms-ssim-db-rgb", "MS-SSIM (dB)", "{:.3f}"),
           ("bpp_ratio", "real/est. bpp", "{:.4f}"), ("encoding_time", "encode (s)", "{:.3f}"),
           ("decoding_time", "decode (s)", "{:.3f}"))


def _fmt(v, fmt: str) -> str:
    if v is None:
        return ""
    try:
        return fmt.format(v)
    except (ValueError, TypeError):
        return str(v)


def per_image_html(rd_files: Sequence[Path]) -> str:
    """One collapsible table per result file that has per-image rows (anchors and summaries have none)."""
    from compresslab.evaluation.results import RDResult, ResultFileError

    blocks = []
    for f in rd_files:
        try:
            rd = RDResult.read(f)
        except ResultFileError:  # a summary.json given as input: curves only, no per-image rows
            continue
        if not rd.per_image:
            continue
        label = rd.meta.label or rd.meta.model.get("name") or rd.name or f.parent.name
        lam = f", λ {rd.meta.lmbda:g}" if rd.meta.lmbda is not None else ""
        head = "".join(f"<th>{html.escape(t)}</th>" for _, t, _ in COLUMNS)
        rows = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(r.get(k), fmt))}</td>" for k, _, fmt in COLUMNS)
                       + "</tr>" for r in rd.per_image)
        blocks.append(f'<details class="per-image" data-file="{html.escape(str(f))}"><summary>'
                      f"{html.escape(str(label))}{html.escape(lam)}: {len(rd.per_image)} images "
                      f"<code>{html.escape(str(f))}</code></summary><table><tr>{head}</tr>{rows}</table></details>")
    return "\n".join(blocks) or "<p>No per-image rows in these result files.</p>"
