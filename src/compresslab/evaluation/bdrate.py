"""BD-rate / BD-PSNR through the ``bjontegaard`` package (FAU-LMS), with the method named next to every number.

Points are sorted by rate and the fewest points dropped that make quality increase with rate (the count is in every
line: "dropped N");
``require_matching_points=False``. Fewer than 4 usable points on either curve, or too little quality overlap,
gives an "unavailable" result with the reason instead of a number.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass
from typing import Sequence

import bjontegaard as bd
import numpy as np

METHODS = ("akima", "pchip", "cubic")
DEFAULT_METHOD = "akima"
MIN_POINTS = 4


@dataclass
class BDResult:
    available: bool
    method: str
    bd_rate: float | None = None      # percent; negative = test needs less rate at equal quality
    bd_psnr: float | None = None      # dB (or the metric's unit); positive = test better
    overlap: float | None = None      # quality overlap / union of both ranges (bjontegaard's definition)
    overlap_range: tuple[float, float] | None = None
    anchor_points_in_overlap: int | None = None  # measured anchor points inside the band (a band holding one point
    # is a local comparison: the anchor is interpolated across it from a single measurement and its neighbours)
    n_anchor: int = 0
    n_test: int = 0
    dropped: int = 0
    reason: str = ""

    def line(self, metric: str = "psnr-rgb") -> str:
        if not self.available:
            return f"BD-rate unavailable: {self.reason} (method {self.method})"
        lo, hi = self.overlap_range
        return (f"BD-rate {self.bd_rate:+.2f} % (method {self.method}, {metric}), BD-PSNR {self.bd_psnr:+.3f} dB, "
                f"overlap {100 * self.overlap:.0f} % [{lo:.2f}, {hi:.2f}] holding {self.anchor_points_in_overlap} "
                f"anchor point(s), points {self.n_test} vs {self.n_anchor}"
                + (f", dropped {self.dropped} non-monotone" if self.dropped else ""))

    def as_dict(self) -> dict:
        return asdict(self)


def monotone_points(rate: Sequence[float], quality: Sequence[float]) -> tuple[np.ndarray, np.ndarray, int]:
    """Sort by rate; keep the largest subset whose quality strictly increases with rate (a longest increasing
    subsequence, so one early outlier costs one point, not every later one). Returns (rates, qualities, dropped)."""
    pts = sorted((float(r), float(q)) for r, q in zip(rate, quality) if math.isfinite(r) and math.isfinite(q)
                 and r > 0)
    best = [1] * len(pts)      # length of the longest valid chain ending at i
    prev = [-1] * len(pts)
    for i, (r, q) in enumerate(pts):
        for j in range(i):     # first (lowest-rate) predecessor wins ties: deterministic
            if pts[j][0] < r and pts[j][1] < q and best[j] + 1 > best[i]:
                best[i], prev[i] = best[j] + 1, j
    kept: list[tuple[float, float]] = []
    i = max(range(len(pts)), key=lambda k: (best[k], -k)) if pts else -1
    while i >= 0:
        kept.append(pts[i])
        i = prev[i]
    arr = np.array(kept[::-1], dtype=float).reshape(-1, 2)
    return arr[:, 0], arr[:, 1], len(list(rate)) - len(kept)


def bd_rate(anchor_rate, anchor_quality, test_rate, test_quality, method: str = DEFAULT_METHOD,
            min_overlap: float = 0.05) -> BDResult:
    if method not in METHODS:
        raise ValueError(f"unknown BD method {method!r}; use one of {METHODS}")
    ra, qa, da = monotone_points(anchor_rate, anchor_quality)
    rt, qt, dt = monotone_points(test_rate, test_quality)
    res = BDResult(available=False, method=method, n_anchor=len(ra), n_test=len(rt), dropped=da + dt)
    if len(ra) < MIN_POINTS or len(rt) < MIN_POINTS:
        res.reason = (f"need at least {MIN_POINTS} monotone RD points per curve, have {len(rt)} (test) and "
                      f"{len(ra)} (anchor)")
        return res
    lo, hi = max(qa.min(), qt.min()), min(qa.max(), qt.max())
    union = max(qa.max(), qt.max()) - min(qa.min(), qt.min())
    res.overlap = max(hi - lo, 0.0) / union if union > 0 else 0.0
    res.overlap_range = (float(lo), float(hi))
    res.anchor_points_in_overlap = int(((qa >= lo) & (qa <= hi)).sum())
    if res.overlap < min_overlap or hi <= lo:
        res.reason = (f"quality ranges overlap {100 * res.overlap:.1f} % (< {100 * min_overlap:.0f} %): test "
                      f"[{qt.min():.2f}, {qt.max():.2f}] vs anchor [{qa.min():.2f}, {qa.max():.2f}]")
        return res
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # overlap is reported by us, not as a warning
        kw = dict(method=method, require_matching_points=False, min_overlap=0)
        res.bd_rate = float(bd.bd_rate(ra, qa, rt, qt, **kw))
        res.bd_psnr = float(bd.bd_psnr(ra, qa, rt, qt, **kw))
    res.available = math.isfinite(res.bd_rate) and math.isfinite(res.bd_psnr)
    if not res.available:
        bad = [n for n, v in (("BD-rate", res.bd_rate), ("BD-PSNR", res.bd_psnr)) if not math.isfinite(v)]
        res.reason = f"the fit returned a non-finite {' and '.join(bad)}"
    return res


def rate_change_at_equal_quality(anchor_rate, anchor_quality, rate: float, quality: float) -> float | None:
    """Single-point comparison: rate / anchor rate at the same quality - 1 (percent), interpolating the anchor's
    log-rate over quality (PCHIP). None when the quality lies outside the anchor's range."""
    from scipy.interpolate import PchipInterpolator

    ra, qa, _ = monotone_points(anchor_rate, anchor_quality)
    if len(ra) < 2 or not (qa.min() <= quality <= qa.max()):
        return None
    log_r = PchipInterpolator(qa, np.log(ra))(quality)
    return float(100 * (rate / math.exp(float(log_r)) - 1))
