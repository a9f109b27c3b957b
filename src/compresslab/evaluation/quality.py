"""Quality metrics derived from a results file (MS-SSIM in dB from MS-SSIM): no torch, so that reading and
summarising rd.json files (a sweep's summary in its submitting process, ``compresslab rd``) stays light. The metrics
computed from images are in ``metrics``."""

from __future__ import annotations

import math


def msssim_db(v: float) -> float:
    return -10 * math.log10(max(1 - v, 1e-12)) if math.isfinite(v) else float("nan")


QUALITY_METRICS = ("psnr-rgb", "ms-ssim-rgb", "ms-ssim-db-rgb")


def with_derived_metrics(results: dict) -> dict:
    """CompressAI-format results with ``ms-ssim-db-rgb`` derived from ``ms-ssim-rgb`` where a file lacks it (published
    curves and eval_model outputs often do)."""
    ms = results.get("ms-ssim-rgb")
    if isinstance(ms, list) and "ms-ssim-db-rgb" not in results:
        results = {**results, "ms-ssim-db-rgb": [msssim_db(float(v)) for v in ms]}
    return results
