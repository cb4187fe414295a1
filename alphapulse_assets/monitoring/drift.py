"""Drift: is recent data different from what the champion learned on, and is the champion still as good as promised?

Pure numpy and scipy. PSI and the KS statistic say how large a difference is; tests on effective sample sizes say
whether it is more than noise. Both must agree before a feature counts as drifted.

How many independent rows a window is worth is measured on the reference itself. Market features cluster: a
72-hour window of a 24-hour range or a 168-hour z-score, taken inside a volatile spell, differs from a quarter's
distribution although nothing changed, and the symbols move together, so two symbols' rows are not twice the
evidence. A lag-1 autocorrelation sees none of that (it rated `range_log`'s 144 rows as 69 independent ones; the
spread of the reference's own 72-hour windows says 12). So each reference is cut into the windows a report will
compare, and how far their means and KS distances stray from the whole gives each test its effective rows.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, replace
from functools import partial

import numpy as np
from scipy.special import kolmogorov

PSI_WARNING = 0.1
PSI_DRIFT = 0.25
_EPS = 1e-4
# The reference's windows calibrate the tests at a tail quantile, not at their mean: under volatility clustering
# window statistics have heavier tails than independent rows give, and alarms live in the tail. For the KS
# distance, sqrt(n) * D of n independent rows exceeds _KOLMOGOROV_TAIL with probability 1 - _TAIL_QUANTILE; for
# the window mean, |z| exceeds _NORMAL_TAIL with that probability.
_TAIL_QUANTILE = 0.9
_KOLMOGOROV_TAIL = 1.2238
_NORMAL_TAIL = 1.6449
# Windows of the reference are taken this many times per window length (overlapping: a denser, steadier estimate).
_WINDOW_STARTS_PER_LENGTH = 12
# A reference holding fewer windows than this says too little about their spread; the lag-1 rule alone is used.
_MIN_WINDOWS = 8


def psi(reference: np.ndarray, current: np.ndarray, bins: int = 10) -> float:
    """PSI over reference-quantile bins plus one bin for missing values (a feature going null is drift too)."""
    return Reference.of(reference, bins).psi(current)


def ks_statistic(reference: np.ndarray, current: np.ndarray) -> float:
    """Largest distance between the two empirical CDFs (missing values ignored)."""
    return Reference.of(reference).ks(current)


def _shares(edges: np.ndarray, size: int, valid: np.ndarray) -> np.ndarray:
    counts = np.bincount(np.searchsorted(edges, valid, side="right"), minlength=edges.size + 1).astype(float)
    counts = np.append(counts, size - valid.size)
    return (counts + _EPS) / (counts.sum() + _EPS * counts.size)


@dataclass(frozen=True)
class WindowSpread:
    """How much windows of `rows` valid values, cut from the reference itself, stray from it: as the number of
    independent rows that would stray as far, for the mean test and for the KS test."""

    rows: float  # mean number of valid values per window
    mean_rows: float
    ks_rows: float

    @classmethod
    def of(cls, grid: np.ndarray, ref: Reference, window_hours: int) -> WindowSpread | None:
        """`grid` is (symbols, hours), NaN where missing; windows span `window_hours` hours of every symbol."""
        symbols, hours = grid.shape
        stride = max(1, window_hours // _WINDOW_STARTS_PER_LENGTH)
        starts = np.arange(0, hours - window_hours + 1, stride)
        valid_total = ref.sorted_valid.size
        if starts.size < _MIN_WINDOWS or valid_total == 0:
            return None
        # Each value's reference CDF just after and just before it: the exact two-sample KS distance of a window
        # is the largest gap at its own points, so no window ever has to be merged with the reference.
        right = np.searchsorted(ref.sorted_valid, grid, side="right") / valid_total
        left = np.searchsorted(ref.sorted_valid, grid, side="left") / valid_total
        index = starts[:, None] + np.arange(window_hours)[None, :]

        def by_window(columns: np.ndarray) -> np.ndarray:
            """One row per window: its hours of every symbol."""
            return columns[:, index].transpose(1, 0, 2).reshape(starts.size, symbols * window_hours)

        unsorted = by_window(grid)
        order = np.argsort(unsorted, axis=1)  # NaN last
        values = np.take_along_axis(unsorted, order, axis=1)
        right, left = (np.take_along_axis(by_window(a), order, axis=1) for a in (right, left))
        present = ~np.isnan(values)
        counts = present.sum(axis=1)
        usable = counts >= 2
        if usable.sum() < _MIN_WINDOWS:
            return None
        values, right, left, present, counts = (a[usable] for a in (values, right, left, present, counts))
        rank = np.arange(1, values.shape[1] + 1)[None, :]
        m = counts[:, None].astype(float)
        gaps = np.where(present, np.maximum(rank / m - right, left - (rank - 1) / m), 0.0)
        distance = gaps.max(axis=1)
        rows = float(counts.mean())
        # A window lies inside the reference: it strays by a factor sqrt(1 - rows / valid_total) less than an
        # outside one would. n = rows_eff * total / (rows + total) is the two-sample size the KS p-value uses.
        inside = math.sqrt(max(1.0 - rows / valid_total, 1e-9))
        tail_distance = float(np.quantile(distance, _TAIL_QUANTILE)) / inside
        ks_rows = (
            (_KOLMOGOROV_TAIL / tail_distance) ** 2 * (rows + valid_total) / valid_total
            if tail_distance > 0
            else math.inf
        )
        window_means = np.nanmean(np.where(present, values, np.nan), axis=1)
        tail_gap = float(np.quantile(np.abs(window_means - ref.mean), _TAIL_QUANTILE)) / inside
        mean_rows = (
            (_NORMAL_TAIL * ref.spread / tail_gap) ** 2 if tail_gap > 0 and np.isfinite(ref.spread) else math.inf
        )
        return cls(rows, mean_rows, ks_rows)

    def scaled(self, valid_rows: int) -> tuple[float, float]:
        """(mean-test, KS-test) effective rows of a sample of `valid_rows` values."""
        factor = valid_rows / self.rows if self.rows else 0.0
        return self.mean_rows * factor, self.ks_rows * factor


@dataclass(frozen=True)
class Reference:
    """One feature's reference series with what every comparison against it needs, computed once: a champion's
    reference is fixed, and a replay compares thousands of hours with it."""

    size: int
    sorted_valid: np.ndarray  # the non-missing values, sorted
    cdf_at_valid: np.ndarray  # the empirical CDF at each of them
    edges: np.ndarray  # PSI bin edges: the reference's inner deciles
    bin_shares: np.ndarray
    autocorrelation: float
    mean: float
    spread: float  # sample standard deviation of the non-missing values
    null_share: float
    windows: WindowSpread | None = None  # measured when the report's window shape is known

    @classmethod
    def of(cls, values: np.ndarray, bins: int = 10, window: tuple[int, int] | None = None) -> Reference:
        """`values` in time order (per symbol, symbols one after another), missing values as NaN. With `window`
        = (symbols, window_hours), `values` is a complete symbol-major grid and the spread of its own windows of
        that many hours is measured (see WindowSpread)."""
        values = np.asarray(values, dtype=float)
        in_order = values[~np.isnan(values)]
        valid = np.sort(in_order)
        edges = np.unique(np.quantile(valid, np.linspace(0, 1, bins + 1)[1:-1])) if valid.size else np.array([])
        reference = cls(
            size=values.size,
            sorted_valid=valid,
            cdf_at_valid=np.searchsorted(valid, valid, side="right") / valid.size if valid.size else valid,
            edges=edges,
            bin_shares=_shares(edges, values.size, valid),
            autocorrelation=lag1_autocorrelation(values),
            mean=float(in_order.mean()) if in_order.size else float("nan"),
            spread=float(np.std(in_order, ddof=1)) if in_order.size > 1 else float("nan"),
            null_share=float(np.isnan(values).mean()) if values.size else float("nan"),
        )
        if window is None:
            return reference
        symbols, window_hours = window
        if symbols <= 0 or values.size % symbols:
            raise ValueError(f"{values.size} values do not form a grid of {symbols} symbols")
        return replace(reference, windows=WindowSpread.of(values.reshape(symbols, -1), reference, window_hours))

    def psi(self, current: np.ndarray) -> float:
        if self.sorted_valid.size == 0:
            return float("nan")
        current = np.asarray(current, dtype=float)
        q = _shares(self.edges, current.size, current[~np.isnan(current)])
        p = self.bin_shares
        return float(np.sum((q - p) * np.log(q / p)))

    def ks(self, current: np.ndarray) -> float:
        """The largest CDF distance, evaluated at every point of both samples (where it can change)."""
        current = np.asarray(current, dtype=float)
        b = np.sort(current[~np.isnan(current)])
        a = self.sorted_valid
        if a.size == 0 or b.size == 0:
            return float("nan")
        at_a = np.abs(self.cdf_at_valid - np.searchsorted(b, a, side="right") / b.size)
        at_b = np.abs(np.searchsorted(a, b, side="right") / a.size - np.searchsorted(b, b, side="right") / b.size)
        return float(max(at_a.max(), at_b.max()))


def lag1_autocorrelation(values: np.ndarray) -> float:
    """Lag-1 autocorrelation of a series in time order (0 for a constant series), clipped to [0, 0.99]."""
    x = np.asarray(values, dtype=float)
    x = x[~np.isnan(x)]
    if x.size < 3:
        return 0.0
    centred = x - x.mean()
    denominator = float(centred @ centred)
    if denominator == 0.0:
        return 0.0
    return float(np.clip((centred[1:] @ centred[:-1]) / denominator, 0.0, 0.99))


def effective_rows(n: int, autocorrelation: float) -> float:
    """How many independent rows n rows of an AR(1)-like series are worth for a test of their mean.

    A rolling feature (24-hour volatility, say) moves slowly: 72 hourly rows of it hold a handful of independent
    observations, and a test that counted 72 would raise false alarms on noise.
    """
    return n * (1.0 - autocorrelation) / (1.0 + autocorrelation)


def ks_p_value(statistic: float, n_reference: float, n_current: float) -> float:
    """Two-sample Kolmogorov-Smirnov p-value (asymptotic, with Stephens' small-sample correction)."""
    if not np.isfinite(statistic) or n_reference <= 0 or n_current <= 0:
        return float("nan")
    n = n_reference * n_current / (n_reference + n_current)
    return float(kolmogorov((math.sqrt(n) + 0.12 + 0.11 / math.sqrt(n)) * statistic))


def _upper_normal_p(z: float) -> float:
    return float(0.5 * math.erfc(z / math.sqrt(2.0))) if np.isfinite(z) else float("nan")


def _two_sided_normal_p(z: float) -> float:
    return float(math.erfc(abs(z) / math.sqrt(2.0))) if np.isfinite(z) else float("nan")


@dataclass(frozen=True)
class DriftThresholds:
    """When a comparison counts as evidence. `alpha` is the false-alarm rate of a whole report (all features):
    each feature is tested at alpha / features (Bonferroni), since one report tests every feature at once."""

    alpha: float = 0.05
    min_reference_rows: int = 200
    min_current_rows: int = 24
    # Below this many effective (independent) current rows a feature is not tested: the report says so.
    min_effective_rows: float = 20.0
    critical_share: float = 0.3


@dataclass(frozen=True)
class FeatureDrift:
    feature: str
    psi: float
    ks: float
    p_value: float  # smallest of the mean-shift, KS and missing-share tests, Bonferroni-corrected over those run
    significant: bool
    tested: bool  # enough effective rows for the tests on values (the missing-share test always runs)
    effective_rows: float
    reference_mean: float
    current_mean: float
    reference_null_share: float
    current_null_share: float

    @property
    def level(self) -> str:
        """drift: significant and PSI >= 0.25; warning: significant and PSI >= 0.1; ok otherwise; insufficient_data
        when too few effective rows were there to test. A PSI that is not significant is noise, not drift."""
        if self.significant and self.psi >= PSI_DRIFT:
            return "drift"
        if self.significant and self.psi >= PSI_WARNING:
            return "warning"
        return "ok" if self.tested else "insufficient_data"


@dataclass(frozen=True)
class DriftSummary:
    status: str  # ok | warning | critical | insufficient_data
    reason: str
    drifted_share: float
    max_psi: float
    features: list[FeatureDrift]

    @property
    def detected(self) -> bool:
        return self.status in ("warning", "critical")

    def top(self, n: int = 5) -> list[FeatureDrift]:
        return [f for f in self.features if f.level in ("drift", "warning")][:n]


def _mean(values: np.ndarray) -> float:
    finite = values[~np.isnan(values)]
    return float(finite.mean()) if finite.size else float("nan")


def compare_feature(
    name: str, reference: np.ndarray | Reference, current: np.ndarray, alpha: float, min_effective_rows: float
) -> FeatureDrift:
    """One feature: PSI and KS as magnitudes; a mean-shift z-test, the KS test and a missing-share test, on
    effective sample sizes, decide whether the difference is more than noise at level `alpha`."""
    ref = reference if isinstance(reference, Reference) else Reference.of(reference)
    current = np.asarray(current, dtype=float)
    cur_ok = current[~np.isnan(current)]
    # Estimated on the long reference series, where it is stable; the current window is assumed to move alike.
    rho = ref.autocorrelation
    n_ref, n_cur = effective_rows(ref.sorted_valid.size, rho), effective_rows(cur_ok.size, rho)
    # The reference's own windows bound both from above: whichever rule finds less evidence is the one used.
    n_mean, n_ks = (n_cur, n_cur) if ref.windows is None else map(partial(min, n_cur), ref.windows.scaled(cur_ok.size))
    ratio = ref.sorted_valid.size / cur_ok.size if cur_ok.size else 0.0
    ks = ref.ks(current)
    p_cur = float(np.isnan(current).mean()) if current.size else float("nan")
    drift = partial(
        FeatureDrift,
        feature=name,
        psi=ref.psi(current),
        ks=ks,
        effective_rows=min(n_mean, n_ks),
        reference_mean=ref.mean,
        current_mean=_mean(current),
        reference_null_share=ref.null_share,
        current_null_share=p_cur,
    )
    # A feature going missing is drift whatever its values do, so the missing-share test always runs. One-sided:
    # values where the reference had nulls (a rolling window that was still filling when the model trained, a
    # feed that came back) are judged by the tests on the values, not alarmed as a fault.
    p_ref = ref.null_share
    pooled = (p_ref * ref.size + p_cur * current.size) / (ref.size + current.size)
    null_spread = math.sqrt(pooled * (1 - pooled) * (1.0 / ref.size + 1.0 / current.size))
    p_values = [_upper_normal_p((p_cur - p_ref) / null_spread if null_spread > 0 else 0.0)]
    # Measured on the reference's own windows, the mean test needs no large-sample argument: it asks how many of
    # those windows' standard deviations the current mean lies away, so it runs on a window of few effective rows.
    if (ref.windows is not None and n_mean > 0) or (n_mean >= min_effective_rows and n_ref >= min_effective_rows):
        spread, n_ref_mean = ref.spread, min(n_ref, n_mean * ratio)
        z = (cur_ok.mean() - ref.mean) / (spread * math.sqrt(1.0 / n_ref_mean + 1.0 / n_mean)) if spread else 0.0
        p_values.append(_two_sided_normal_p(z))
    if n_ks >= min_effective_rows and n_ref >= min_effective_rows:
        p_values.append(ks_p_value(ks, min(n_ref, n_ks * ratio), n_ks))
    tested = len(p_values) > 1
    p_value = min(1.0, len(p_values) * min(p_values))
    return drift(p_value=p_value, significant=p_value < alpha, tested=tested)


def measure_drift(
    reference: dict[str, np.ndarray] | dict[str, Reference],
    current: dict[str, np.ndarray],
    thresholds: DriftThresholds = DriftThresholds(),
) -> DriftSummary:
    """Compare each feature's current window with the champion's training reference.

    Arrays are in time order (per symbol, symbols one after another), so autocorrelation can be estimated. The
    reference may come prepared (`Reference.of`) when many windows are compared with it.
    """
    reference = {k: v if isinstance(v, Reference) else Reference.of(v) for k, v in reference.items()}
    n_ref = min((v.size for v in reference.values()), default=0)
    n_cur = min((v.size for v in current.values()), default=0)
    if n_ref < thresholds.min_reference_rows or n_cur < thresholds.min_current_rows:
        return DriftSummary(
            "insufficient_data",
            f"{n_ref} reference and {n_cur} current rows; at least {thresholds.min_reference_rows} and "
            f"{thresholds.min_current_rows} are needed for a test that is not noise",
            float("nan"),
            float("nan"),
            [],
        )
    per_feature_alpha = thresholds.alpha / max(len(reference), 1)
    rows = [
        compare_feature(name, reference[name], current[name], per_feature_alpha, thresholds.min_effective_rows)
        for name in reference
    ]
    rows.sort(key=lambda r: (r.level not in ("drift", "warning"), -r.psi if np.isfinite(r.psi) else 0.0))
    tested = [r for r in rows if r.level != "insufficient_data"]
    if not tested:
        return DriftSummary(
            "insufficient_data",
            f"no feature has {thresholds.min_effective_rows:g} effective current rows (autocorrelated features "
            "hold few independent observations): widen ALPHAPULSE_DRIFT_WINDOW_HOURS",
            float("nan"),
            max((r.psi for r in rows if np.isfinite(r.psi)), default=float("nan")),
            rows,
        )
    drifted = sum(r.level == "drift" for r in tested)
    warned = sum(r.level == "warning" for r in tested)
    share = drifted / len(tested)
    untested = len(rows) - len(tested)
    scope = f" ({untested} not tested: too few effective rows)" if untested else ""
    if share >= thresholds.critical_share:
        status, reason = "critical", f"{drifted} of {len(tested)} features drifted (PSI >= {PSI_DRIFT}){scope}"
    elif drifted or warned:
        status = "warning"
        reason = f"{drifted} drifted and {warned} shifted of {len(tested)} features{scope}"
    else:
        status, reason = "ok", f"no significant shift in {len(tested)} features{scope}"
    return DriftSummary(status, reason, share, max(r.psi for r in tested), rows)


_STYLE = (
    "body{font-family:sans-serif;margin:2em} table{border-collapse:collapse} "
    "td,th{padding:4px 10px;border:1px solid #ccc;text-align:right} td:first-child{text-align:left}"
)


def render_html(summary: DriftSummary, title: str, context_lines: list[str]) -> str:
    colours = {"drift": "#f8d7da", "warning": "#fff3cd", "ok": "#d1e7dd", "insufficient_data": "#e2e3e5"}
    body = "".join(
        f"<tr style='background:{colours[r.level]}'><td>{html.escape(r.feature)}</td><td>{r.level}</td>"
        f"<td>{r.psi:.4f}</td><td>{r.ks:.4f}</td><td>{r.p_value:.2g}</td><td>{r.effective_rows:.0f}</td>"
        f"<td>{r.reference_mean:.5g}</td><td>{r.current_mean:.5g}</td>"
        f"<td>{r.reference_null_share:.1%}</td><td>{r.current_null_share:.1%}</td></tr>"
        for r in summary.features
    )
    details = "".join(f"<li>{html.escape(line)}</li>" for line in context_lines)
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{_STYLE}</style>
</head><body><h1>{html.escape(title)}</h1>
<p><b>Status: {summary.status}</b> &mdash; {html.escape(summary.reason)}</p><ul>{details}</ul>
<p>PSI thresholds: &lt; {PSI_WARNING} stable, {PSI_WARNING}&ndash;{PSI_DRIFT} moderate shift, &ge; {PSI_DRIFT} drift;
a feature counts only when its shift is also significant (mean-shift, KS and missing-share tests on effective
sample sizes, Bonferroni-corrected over features). Bins are reference deciles plus one bin for missing values.</p>
<table><tr><th>feature</th><th>level</th><th>PSI</th><th>KS</th><th>p-value</th><th>effective rows</th>
<th>reference mean</th><th>current mean</th><th>reference nulls</th><th>current nulls</th></tr>{body}</table>
</body></html>"""
