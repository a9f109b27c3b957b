"""BD-rate / BD-PSNR through the ``bjontegaard`` package (FAU-LMS), with the method named next to every number.

Points are sorted by rate and the fewest points dropped that make quality increase with rate (the count is in every
line: "dropped N");
``require_matching_points=False``. Fewer than 4 usable points on either curve, or too little support in the quality
band both curves share, gives an "unavailable" result with the reason instead of a number.

When a comparison is refused (our rule, not bjontegaard's; both thresholds are arguments and CLI flags):
- fewer than ``MIN_POINTS_IN_BAND`` = 2 measured points of either curve inside the shared quality band. BD-rate
  averages the log-rate gap over that band; with one measured point (or none) a curve's share of the integral is one
  interpolated segment reaching past its measurements, so the number compares a fit, not data. Our first CPU
  curves (26.0-27.7 dB) held one kodak/vtm point (28.49 dB lies above them) and are refused by this rule.
- the band covering less than ``MIN_COVERAGE`` = 50 % of the narrower curve's quality range: below that the number
  describes the tail of a curve, not the curve it is quoted for.
Bjontegaard's own overlap (intersection / union, reported as ``overlap``) is not the criterion: it measures the
anchor's width as much as the comparison's support (kodak/vtm spans 20.4 dB, so a 4 dB curve lying wholly inside it
scores under 20 %), and the 5 % default we used before it accepted single-point bands.
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
MIN_POINTS_IN_BAND = 2
MIN_COVERAGE = 0.5


@dataclass
class BDResult:
    available: bool
    method: str
    bd_rate: float | None = None      # percent; negative = test needs less rate at equal quality
    bd_psnr: float | None = None      # dB (or the metric's unit); positive = test better
    overlap: float | None = None      # quality overlap / union of both ranges (bjontegaard's definition)
    overlap_range: tuple[float, float] | None = None
    coverage: float | None = None     # band / the narrower curve's quality range (the refusal criterion)
    anchor_points_in_overlap: int | None = None  # measured anchor points inside the band
    test_points_in_overlap: int | None = None
    n_anchor: int = 0
    n_test: int = 0
    dropped: int = 0
    reason: str = ""

    def line(self, metric: str = "psnr-rgb") -> str:
        if not self.available:
            return f"BD-rate unavailable: {self.reason} (method {self.method})"
        lo, hi = self.overlap_range
        return (f"BD-rate {self.bd_rate:+.2f} % (method {self.method}, {metric}), BD-PSNR {self.bd_psnr:+.3f} dB, "
                f"band [{lo:.2f}, {hi:.2f}] covering {100 * self.coverage:.0f} % of the narrower curve (overlap "
                f"{100 * self.overlap:.0f} % of the union) holding {self.test_points_in_overlap} test and "
                f"{self.anchor_points_in_overlap} anchor point(s), points {self.n_test} vs {self.n_anchor}"
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
            min_coverage: float = MIN_COVERAGE, min_points_in_band: int = MIN_POINTS_IN_BAND) -> BDResult:
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
    narrower = min(qa.max() - qa.min(), qt.max() - qt.min())
    res.overlap = max(hi - lo, 0.0) / union if union > 0 else 0.0
    res.coverage = max(hi - lo, 0.0) / narrower if narrower > 0 else 0.0
    res.overlap_range = (float(lo), float(hi))
    res.anchor_points_in_overlap = int(((qa >= lo) & (qa <= hi)).sum())
    res.test_points_in_overlap = int(((qt >= lo) & (qt <= hi)).sum())
    ranges = f"test [{qt.min():.2f}, {qt.max():.2f}] vs anchor [{qa.min():.2f}, {qa.max():.2f}]"
    if hi <= lo:
        res.reason = f"the quality ranges do not overlap: {ranges}"
        return res
    if res.coverage < min_coverage:
        res.reason = (f"the shared quality band covers {100 * res.coverage:.0f} % of the narrower curve (< "
                      f"{100 * min_coverage:.0f} %): {ranges}")
        return res
    if min(res.anchor_points_in_overlap, res.test_points_in_overlap) < min_points_in_band:
        res.reason = (f"the shared band [{lo:.2f}, {hi:.2f}] holds {res.test_points_in_overlap} test and "
                      f"{res.anchor_points_in_overlap} anchor point(s) (< {min_points_in_band} each): {ranges}; "
                      f"extend the test curve's lambda ladder across the anchor's points")
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
