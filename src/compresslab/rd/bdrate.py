"""BD-rate / BD-PSNR through the ``bjontegaard`` package (FAU-LMS), with the method named next to every number.

The rules live here, once; ``compresslab bd-rate`` and ``compresslab rd`` take them as the same flags (defaults: the
module constants below; the evaluation config has no BD block, so these constants are the defaults). A comparison
gives a number only when the data support it; otherwise the result is "unavailable" with the cause named.

Each curve, before any fit (``prepare_curve``):
- every point needs a finite, positive rate and a finite quality, else refused naming the point.
- **duplicated rates** (equal within ``RATE_REL_TOL``): one rate can have one quality, and which of two a fit keeps
  is an arbitrary tie, so they are **refused** naming the points (``duplicates="refuse"``, the default);
  ``duplicates="mean"`` replaces each group by one point at the mean rate and mean quality (and says so).
- **non-monotone curves** (after sorting by rate, quality must strictly increase): **refused** naming each pair where
  quality fails to rise (``monotone="refuse"``, the default). ``monotone="drop"`` keeps the longest increasing subset
  (the old behaviour), names every point it dropped, and says when several subsets of that size exist (the number
  then depends on the choice).
- at least ``MIN_POINTS`` = 4 points.

Both curves together (the support of the number):
- their quality ranges must overlap, and their **rate ranges must overlap** (BD-PSNR averages over the shared rate
  range; bjontegaard returns NaN without one), each refusal naming both spans.
- the shared quality band must be at least ``MIN_BAND_DB`` = 1 dB wide (MS-SSIM as -10 log10(1 - MS-SSIM)): a band of
  a tenth of a dB averages the fits over a sliver, whatever share of a narrow curve it is.
- the band must cover at least ``MIN_COVERAGE`` = 50 % of the narrower curve's quality range: below that the number
  describes the tail of a curve, not the curve it is quoted for.
- at least ``MIN_POINTS_IN_BAND`` = 2 measured points of each curve inside the band, a point counting when it lies
  within ``BAND_TOL_DB`` = 1e-6 (the metric's unit) of the band (a band edge is another curve's measured point, so a
  1e-8 dB difference must not drop an endpoint). With one measured point a curve's share of the integral is one
  interpolated segment reaching past its measurements, so the number compares a fit, not data.
Bjontegaard's own overlap (intersection / union, reported as ``overlap``) is not a criterion: it measures the
anchor's width as much as the comparison's support (kodak/vtm spans 20.4 dB).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, field, replace
from typing import Sequence

METHODS = ("akima", "pchip", "cubic")
DEFAULT_METHOD = "akima"
MIN_POINTS = 4
MIN_POINTS_IN_BAND = 2
MIN_COVERAGE = 0.5
MIN_BAND_DB = 1.0
BAND_TOL_DB = 1e-6
RATE_REL_TOL = 1e-9
MONOTONE_RULES = ("refuse", "drop")
DUPLICATE_RULES = ("refuse", "mean")
DB_FREE_METRICS = ("ms-ssim-rgb",)  # linear quality axes; the band width is measured after -10 log10(1 - q)


@dataclass(frozen=True)
class BDRules:
    """The knobs of a comparison; the CLI flags of ``bd-rate`` and ``rd`` map one to one onto these fields."""
    method: str = DEFAULT_METHOD
    min_points_in_band: int = MIN_POINTS_IN_BAND
    min_coverage: float = MIN_COVERAGE
    min_band_db: float = MIN_BAND_DB
    band_tol_db: float = BAND_TOL_DB
    monotone: str = "refuse"
    duplicates: str = "refuse"

    def __post_init__(self):
        for name, value, allowed in (("method", self.method, METHODS), ("monotone", self.monotone, MONOTONE_RULES),
                                     ("duplicates", self.duplicates, DUPLICATE_RULES)):
            if value not in allowed:
                what = "BD method" if name == "method" else f"{name} rule"
                raise ValueError(f"unknown {what} {value!r}; use one of {allowed}")


@dataclass
class BDResult:
    available: bool
    method: str
    bd_rate: float | None = None      # percent; negative = test needs less rate at equal quality
    bd_psnr: float | None = None      # dB (or the metric's unit); positive = test better
    overlap: float | None = None      # quality overlap / union of both ranges (bjontegaard's definition)
    overlap_range: tuple[float, float] | None = None
    band_db: float | None = None      # width of the shared quality band in dB
    coverage: float | None = None     # band / the narrower curve's quality range (the refusal criterion)
    anchor_points_in_overlap: int | None = None  # measured anchor points inside the band (with the tolerance)
    test_points_in_overlap: int | None = None
    n_anchor: int = 0
    n_test: int = 0
    dropped: int = 0
    dropped_points: list[str] = field(default_factory=list)  # "test 0.3000 bpp / 29.00 dB", monotone="drop" only
    notes: list[str] = field(default_factory=list)           # averaged duplicates, ambiguous subsets
    reason: str = ""

    def line(self, metric: str = "psnr-rgb") -> str:
        if not self.available:
            return f"BD-rate unavailable: {self.reason} (method {self.method})"
        lo, hi = self.overlap_range
        return (f"BD-rate {self.bd_rate:+.2f} % (method {self.method}, {metric}), BD-PSNR {self.bd_psnr:+.3f} dB, "
                f"band [{lo:.2f}, {hi:.2f}] covering {100 * self.coverage:.0f} % of the narrower curve (overlap "
                f"{100 * self.overlap:.0f} % of the union) holding {self.test_points_in_overlap} test and "
                f"{self.anchor_points_in_overlap} anchor point(s), points {self.n_test} vs {self.n_anchor}"
                + (f", dropped {self.dropped} non-monotone: {', '.join(self.dropped_points)}" if self.dropped else "")
                + "".join(f"; {n}" for n in self.notes))

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class PreparedCurve:
    rate: "np.ndarray"  # noqa: F821 - numpy is imported lazily (the CLI parser imports this module)
    quality: "np.ndarray"  # noqa: F821
    error: str = ""
    dropped_points: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _fmt_point(rate: float, quality: float, metric: str, name: str | None = None) -> str:
    q = f"{quality:.4f}" if metric in DB_FREE_METRICS else f"{quality:.2f} dB"
    return f"{rate:.4f} bpp / {q}" + (f" ({name})" if name else "")


def _to_db(q: float, metric: str) -> float:
    if metric in DB_FREE_METRICS:
        return -10 * math.log10(max(1 - q, 1e-12))
    return q


def _span(values, unit: str, digits: int) -> str:
    return f"{min(values):.{digits}f}-{max(values):.{digits}f} {unit}".rstrip()


def prepare_curve(rate: Sequence[float], quality: Sequence[float], which: str = "test", rules: BDRules = BDRules(),
                  metric: str = "psnr-rgb", names: Sequence[str] | None = None) -> PreparedCurve:
    """One curve's points sorted by rate under the rules above (finite points, duplicated rates, monotonicity);
    ``error`` holds the refusal, naming the points, when the rules refuse the curve."""
    import numpy as np

    rate, quality = [float(r) for r in rate], [float(q) for q in quality]
    if len(rate) != len(quality):
        return PreparedCurve(np.array([]), np.array([]), f"{which} curve has {len(rate)} rates but {len(quality)} "
                                                         f"quality values")
    names = list(names) if names is not None else [None] * len(rate)
    bad = [_fmt_point(r, q, metric, n) for r, q, n in zip(rate, quality, names)
           if not (math.isfinite(r) and math.isfinite(q) and r > 0)]
    if bad:
        return PreparedCurve(np.array([]), np.array([]), f"{which} curve has point(s) without a finite positive "
                                                         f"rate and a finite quality: {', '.join(bad)}; fix or "
                                                         f"remove those results")
    pts = sorted(zip(rate, quality, names), key=lambda p: (p[0], p[1]))
    groups: list[list[tuple]] = []
    for p in pts:
        if groups and math.isclose(p[0], groups[-1][0][0], rel_tol=RATE_REL_TOL, abs_tol=0.0):
            groups[-1].append(p)
        else:
            groups.append([p])
    dups = [g for g in groups if len(g) > 1]
    notes: list[str] = []
    if dups and rules.duplicates == "refuse":
        said = "; ".join(f"{len(g)} points at {g[0][0]:.4f} bpp: " + ", ".join(_fmt_point(r, q, metric, n)
                                                                                 for r, q, n in g) for g in dups)
        return PreparedCurve(np.array([]), np.array([]),
                             f"{which} curve has duplicated rates ({said}): one rate can have only one quality and "
                             f"the fit would keep an arbitrary one; remove the extra results, or pass "
                             f"--duplicates=mean to average each group into one point")
    if dups:  # "mean": one point per group at the mean rate and mean quality
        notes += [f"averaged {len(g)} {which} points at {g[0][0]:.4f} bpp into one ({metric} "
                  f"{sum(q for _, q, _ in g) / len(g):.4f})" for g in dups]
    merged = [(sum(r for r, _, _ in g) / len(g), sum(q for _, q, _ in g) / len(g),
               g[0][2] if len(g) == 1 else "mean of " + str(len(g))) for g in groups]
    r = np.array([m[0] for m in merged], dtype=float)
    q = np.array([m[1] for m in merged], dtype=float)
    falls = [i for i in range(1, len(q)) if not q[i] > q[i - 1]]
    if not falls:
        return PreparedCurve(r, q, notes=notes)
    kr, kq, _ = monotone_points(r, q)
    kept = set(zip(kr.tolist(), kq.tolist()))
    dropped = [_fmt_point(rr, qq, metric, n) for rr, qq, n in merged if (rr, qq) not in kept]
    if rules.monotone == "refuse":
        said = "; ".join(f"{_fmt_point(r[i - 1], q[i - 1], metric, merged[i - 1][2])} then "
                         f"{_fmt_point(r[i], q[i], metric, merged[i][2])}" for i in falls[:4])
        more = f" and {len(falls) - 4} more" if len(falls) > 4 else ""
        return PreparedCurve(r, q, f"{which} curve is not monotone (quality must rise with rate): {said}{more}; "
                                   f"re-measure or remove those points, or pass --monotone=drop to drop the fewest "
                                   f"({len(dropped)} here: {', '.join(dropped)})", notes=notes)
    subsets = _count_longest_increasing(q)
    if subsets > 1:
        notes.append(f"the {which} curve has {subsets} equally long monotone subsets; the number depends on which "
                     f"one is kept")
    return PreparedCurve(kr, kq, dropped_points=[f"{which} {d}" for d in dropped], notes=notes)


def _count_longest_increasing(q) -> int:
    """How many strictly increasing subsequences of maximal length ``q`` (already sorted by rate) has."""
    n = len(q)
    best, count = [1] * n, [1] * n
    for i in range(n):
        for j in range(i):
            if q[j] < q[i]:
                if best[j] + 1 > best[i]:
                    best[i], count[i] = best[j] + 1, count[j]
                elif best[j] + 1 == best[i]:
                    count[i] += count[j]
    top = max(best, default=0)
    return sum(c for b, c in zip(best, count) if b == top)


def monotone_points(rate: Sequence[float], quality: Sequence[float]):
    """Sort by rate; keep the largest subset whose quality strictly increases with rate (a longest increasing
    subsequence, so one early outlier costs one point, not every later one). Returns (rates, qualities, dropped).
    The ``monotone="drop"`` rule, and the anchor interpolation of ``rate_change_at_equal_quality``."""
    import numpy as np

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


def bd_rate(anchor_rate, anchor_quality, test_rate, test_quality, method: str | None = None, *,
            rules: BDRules | None = None, metric: str = "psnr-rgb", anchor_names: Sequence[str] | None = None,
            test_names: Sequence[str] | None = None, **knobs) -> BDResult:
    """BD-rate of the test curve against the anchor under ``rules`` (keyword knobs override single fields, e.g.
    ``min_points_in_band=1``); ``*_names`` name the points in refusals (e.g. their rd.json files)."""
    rules = replace(rules or BDRules(), **({"method": method} if method else {}), **knobs)
    anchor_rate, anchor_quality, test_rate, test_quality = map(list, (anchor_rate, anchor_quality, test_rate,
                                                                      test_quality))
    anchor = prepare_curve(anchor_rate, anchor_quality, "anchor", rules, metric, anchor_names)
    test = prepare_curve(test_rate, test_quality, "test", rules, metric, test_names)
    ra, qa, rt, qt = anchor.rate, anchor.quality, test.rate, test.quality
    res = BDResult(available=False, method=rules.method, n_anchor=len(ra), n_test=len(rt),
                   dropped_points=anchor.dropped_points + test.dropped_points, notes=anchor.notes + test.notes)
    res.dropped = len(res.dropped_points)
    n_a, n_t = len(anchor_rate), len(test_rate)
    if n_a < MIN_POINTS or n_t < MIN_POINTS:  # the most basic cause first: no rule can make a curve of these
        res.n_anchor, res.n_test = n_a, n_t
        res.reason = f"need at least {MIN_POINTS} RD points per curve, have {n_t} (test) and {n_a} (anchor)"
        return res
    if anchor.error or test.error:
        res.reason = "; ".join(e for e in (test.error, anchor.error) if e)
        return res
    if len(ra) < MIN_POINTS or len(rt) < MIN_POINTS:
        res.reason = (f"need at least {MIN_POINTS} RD points per curve, have {len(rt)} (test) and "
                      f"{len(ra)} (anchor)" + (" after dropping non-monotone points" if res.dropped else ""))
        return res
    unit = "" if metric in DB_FREE_METRICS else "dB"
    digits = 4 if metric in DB_FREE_METRICS else 2
    lo, hi = max(qa.min(), qt.min()), min(qa.max(), qt.max())
    union = max(qa.max(), qt.max()) - min(qa.min(), qt.min())
    narrower = min(qa.max() - qa.min(), qt.max() - qt.min())
    res.overlap = max(hi - lo, 0.0) / union if union > 0 else 0.0
    res.coverage = max(hi - lo, 0.0) / narrower if narrower > 0 else 0.0
    res.overlap_range = (float(lo), float(hi))
    tol = rules.band_tol_db
    res.anchor_points_in_overlap = int(((qa >= lo - tol) & (qa <= hi + tol)).sum())
    res.test_points_in_overlap = int(((qt >= lo - tol) & (qt <= hi + tol)).sum())
    ranges = f"test spans {_span(qt, unit, digits)}, anchor {_span(qa, unit, digits)}"
    if hi <= lo:
        res.reason = f"the quality ranges do not overlap: {ranges}"
        return res
    res.band_db = _to_db(float(hi), metric) - _to_db(float(lo), metric)
    if min(ra.max(), rt.max()) <= max(ra.min(), rt.min()):
        res.reason = (f"rates do not overlap: anchor spans {_span(ra, 'bpp', 3)}, test {_span(rt, 'bpp', 3)} "
                      f"(BD-PSNR averages over the shared rate range, and there is none)")
        return res
    failed = []  # every support rule the band fails, so the reason is complete, not just the first
    if res.band_db < rules.min_band_db:
        failed.append(f"the shared quality band [{lo:.{digits}f}, {hi:.{digits}f}] is {res.band_db:.2f} dB wide (< "
                      f"{rules.min_band_db:g} dB, --min-band-db)")
    if res.coverage < rules.min_coverage:
        failed.append(f"the shared quality band covers {100 * res.coverage:.0f} % of the narrower curve (< "
                      f"{100 * rules.min_coverage:.0f} %)")
    if min(res.anchor_points_in_overlap, res.test_points_in_overlap) < rules.min_points_in_band:
        failed.append(f"the shared band [{lo:.2f}, {hi:.2f}] holds {res.test_points_in_overlap} test and "
                      f"{res.anchor_points_in_overlap} anchor point(s) (< {rules.min_points_in_band} each)")
    if failed:
        fix = ("; extend the test curve's lambda ladder across the anchor's points"
               if min(res.anchor_points_in_overlap, res.test_points_in_overlap) < rules.min_points_in_band else "")
        res.reason = "; ".join(failed) + f": {ranges}{fix}"
        return res
    import bjontegaard as bd

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # overlap is reported by us, not as a warning
        kw = dict(method=rules.method, require_matching_points=False, min_overlap=0)
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
    import numpy as np
    from scipy.interpolate import PchipInterpolator

    ra, qa, _ = monotone_points(anchor_rate, anchor_quality)
    if len(ra) < 2 or not (qa.min() <= quality <= qa.max()):
        return None
    log_r = PchipInterpolator(qa, np.log(ra))(quality)
    return float(100 * (rate / math.exp(float(log_r)) - 1))
