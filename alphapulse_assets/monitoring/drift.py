"""Feature drift: population stability index and Kolmogorov-Smirnov per feature. Pure numpy."""

from __future__ import annotations

import html
from dataclasses import dataclass

import numpy as np

PSI_WARNING = 0.1
PSI_DRIFT = 0.25
_EPS = 1e-4


def psi(reference: np.ndarray, current: np.ndarray, bins: int = 10) -> float:
    """PSI over reference-quantile bins plus one bin for missing values (a feature going null is drift too)."""
    reference = np.asarray(reference, dtype=float)
    current = np.asarray(current, dtype=float)
    ref_ok, cur_ok = reference[~np.isnan(reference)], current[~np.isnan(current)]
    if ref_ok.size == 0:
        return float("nan")
    edges = np.unique(np.quantile(ref_ok, np.linspace(0, 1, bins + 1)[1:-1]))

    def shares(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
        counts = np.bincount(np.searchsorted(edges, valid, side="right"), minlength=edges.size + 1).astype(float)
        counts = np.append(counts, values.size - valid.size)
        return (counts + _EPS) / (counts.sum() + _EPS * counts.size)

    p, q = shares(reference, ref_ok), shares(current, cur_ok)
    return float(np.sum((q - p) * np.log(q / p)))


def ks_statistic(reference: np.ndarray, current: np.ndarray) -> float:
    """Largest distance between the two empirical CDFs (missing values ignored)."""
    a = np.sort(np.asarray(reference, dtype=float)[~np.isnan(reference)])
    b = np.sort(np.asarray(current, dtype=float)[~np.isnan(current)])
    if a.size == 0 or b.size == 0:
        return float("nan")
    grid = np.concatenate([a, b])
    return float(
        np.max(
            np.abs(np.searchsorted(a, grid, side="right") / a.size - np.searchsorted(b, grid, side="right") / b.size)
        )
    )


@dataclass(frozen=True)
class FeatureDrift:
    feature: str
    psi: float
    ks: float
    reference_mean: float
    current_mean: float
    reference_null_share: float
    current_null_share: float

    @property
    def level(self) -> str:
        if not np.isfinite(self.psi):
            return "unknown"
        if self.psi >= PSI_DRIFT:
            return "drift"
        return "warning" if self.psi >= PSI_WARNING else "ok"


@dataclass(frozen=True)
class DriftSummary:
    status: str  # ok | warning | critical | insufficient_data
    reason: str
    drifted_share: float
    max_psi: float
    features: list[FeatureDrift]


def _mean(values: np.ndarray) -> float:
    finite = values[~np.isnan(values)]
    return float(finite.mean()) if finite.size else float("nan")


def measure_drift(
    reference: dict[str, np.ndarray],
    current: dict[str, np.ndarray],
    min_reference_rows: int = 200,
    min_current_rows: int = 30,
    critical_share: float = 0.3,
) -> DriftSummary:
    """Compare each feature's current window with the champion's training reference."""
    n_ref = min((v.size for v in reference.values()), default=0)
    n_cur = min((v.size for v in current.values()), default=0)
    if n_ref < min_reference_rows or n_cur < min_current_rows:
        return DriftSummary(
            "insufficient_data",
            f"{n_ref} reference and {n_cur} current rows; at least {min_reference_rows} and {min_current_rows} "
            "are needed for a PSI that is not noise",
            float("nan"),
            float("nan"),
            [],
        )
    rows = [
        FeatureDrift(
            name,
            psi(reference[name], current[name]),
            ks_statistic(reference[name], current[name]),
            _mean(reference[name]),
            _mean(current[name]),
            float(np.isnan(reference[name]).mean()),
            float(np.isnan(current[name]).mean()),
        )
        for name in reference
    ]
    rows.sort(key=lambda r: -r.psi if np.isfinite(r.psi) else 0.0)
    drifted = sum(r.level == "drift" for r in rows)
    share = drifted / len(rows)
    if share >= critical_share:
        status, reason = "critical", f"{drifted} of {len(rows)} features have PSI >= {PSI_DRIFT}"
    elif any(r.level in ("drift", "warning") for r in rows):
        status, reason = "warning", f"{drifted} features drifted, others within PSI {PSI_WARNING}..{PSI_DRIFT}"
    else:
        status, reason = "ok", f"every feature has PSI < {PSI_WARNING}"
    return DriftSummary(status, reason, share, max(r.psi for r in rows), rows)


_STYLE = (
    "body{font-family:sans-serif;margin:2em} table{border-collapse:collapse} "
    "td,th{padding:4px 10px;border:1px solid #ccc;text-align:right} td:first-child{text-align:left}"
)


def render_html(summary: DriftSummary, title: str, context_lines: list[str]) -> str:
    colours = {"drift": "#f8d7da", "warning": "#fff3cd", "ok": "#d1e7dd", "unknown": "#e2e3e5"}
    body = "".join(
        f"<tr style='background:{colours[r.level]}'><td>{html.escape(r.feature)}</td><td>{r.level}</td>"
        f"<td>{r.psi:.4f}</td><td>{r.ks:.4f}</td><td>{r.reference_mean:.5g}</td><td>{r.current_mean:.5g}</td>"
        f"<td>{r.reference_null_share:.1%}</td><td>{r.current_null_share:.1%}</td></tr>"
        for r in summary.features
    )
    details = "".join(f"<li>{html.escape(line)}</li>" for line in context_lines)
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{_STYLE}</style>
</head><body><h1>{html.escape(title)}</h1>
<p><b>Status: {summary.status}</b> &mdash; {html.escape(summary.reason)}</p><ul>{details}</ul>
<p>PSI thresholds: &lt; {PSI_WARNING} stable, {PSI_WARNING}&ndash;{PSI_DRIFT} moderate shift, &ge; {PSI_DRIFT} drift.
Bins are reference deciles plus one bin for missing values.</p>
<table><tr><th>feature</th><th>level</th><th>PSI</th><th>KS</th><th>reference mean</th><th>current mean</th>
<th>reference nulls</th><th>current nulls</th></tr>{body}</table></body></html>"""
