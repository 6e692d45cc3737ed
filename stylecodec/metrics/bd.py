"""Bjøntegaard deltas (VCEG-M33) with piecewise cubic Hermite (PCHIP) interpolation.

As in the JCT-VC / JVET common-test-conditions sheets and the ``bjontegaard`` package's
'pchip' method: each rate-distortion curve is interpolated by a PCHIP (``scipy``'s, the
same Fritsch-Carlson slopes as the sheets), integrated exactly over the interval where both
curves have points, and the mean difference is reported.

- BD-rate: log10(rate) as a function of the metric, integrated over the overlapping metric
  interval; ``100 * (10**mean(log10 R_test - log10 R_anchor) - 1)`` percent. Negative means
  the test codec needs less rate for the same quality, whatever the metric's direction.
- BD-metric: the metric as a function of log10(rate), integrated over the overlapping
  log-rate interval; ``mean(metric_test - metric_anchor)`` in the metric's unit. Positive is
  better for PSNR-like metrics; with ``lower_is_better=True`` (LPIPS, NME) negative is better.

Rates are positive (bpp); each curve needs >= 2 points, strictly increasing quality with
rate (metric rising, or falling when ``lower_is_better``), else :class:`ValueError`.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy.interpolate import PchipInterpolator

__all__ = ["bd_rate", "bd_metric"]


def _curve(rate: Sequence[float], metric: Sequence[float], lower_is_better: bool,
           which: str) -> tuple[np.ndarray, np.ndarray]:
    """Validated (log10 rate, metric), sorted by rate."""
    r = np.asarray(rate, dtype=np.float64).ravel()
    m = np.asarray(metric, dtype=np.float64).ravel()
    if r.shape != m.shape:
        raise ValueError(f"{which} curve: {r.size} rates but {m.size} metric values")
    if r.size < 2:
        raise ValueError(f"{which} curve: BD needs at least 2 rate-distortion points, got {r.size}")
    if not (np.all(np.isfinite(r)) and np.all(np.isfinite(m))):
        raise ValueError(f"{which} curve: rates and metric values must be finite")
    if np.any(r <= 0):
        raise ValueError(f"{which} curve: rates must be positive, got {r.tolist()}")
    order = np.argsort(r)
    r, m = r[order], m[order]
    quality = -m if lower_is_better else m
    if np.any(np.diff(r) <= 0) or np.any(np.diff(quality) <= 0):
        direction = "fall" if lower_is_better else "rise"
        raise ValueError(f"{which} curve is not monotonic: sorted by rate {r.tolist()} the metric "
                         f"{m.tolist()} must strictly {direction} (drop dominated points first)")
    return np.log10(r), m


def _overlap(a: np.ndarray, b: np.ndarray, what: str) -> tuple[float, float]:
    lo, hi = max(a.min(), b.min()), min(a.max(), b.max())
    if hi <= lo:
        raise ValueError(f"the two curves do not overlap in {what} "
                         f"([{a.min():.6g}, {a.max():.6g}] vs [{b.min():.6g}, {b.max():.6g}])")
    return lo, hi


def _mean_on(x: np.ndarray, y: np.ndarray, lo: float, hi: float) -> float:
    """Mean of the PCHIP through (x, y) over [lo, hi] (x strictly increasing)."""
    return float(PchipInterpolator(x, y).integrate(lo, hi)) / (hi - lo)


def bd_rate(rate_anchor: Sequence[float], metric_anchor: Sequence[float],
            rate_test: Sequence[float], metric_test: Sequence[float],
            lower_is_better: bool = False) -> float:
    """BD-rate of test vs anchor in percent (negative: test saves rate at equal quality)."""
    lr_a, m_a = _curve(rate_anchor, metric_anchor, lower_is_better, "anchor")
    lr_t, m_t = _curve(rate_test, metric_test, lower_is_better, "test")
    lo, hi = _overlap(m_a, m_t, "the metric")
    # interpolate log-rate over the metric: x must increase, so sort each curve by metric
    ia, it = np.argsort(m_a), np.argsort(m_t)
    diff = _mean_on(m_t[it], lr_t[it], lo, hi) - _mean_on(m_a[ia], lr_a[ia], lo, hi)
    return float((10.0 ** diff - 1.0) * 100.0)


def bd_metric(rate_anchor: Sequence[float], metric_anchor: Sequence[float],
              rate_test: Sequence[float], metric_test: Sequence[float],
              lower_is_better: bool = False) -> float:
    """BD-metric (e.g. BD-PSNR in dB): mean metric_test - metric_anchor at equal rate."""
    lr_a, m_a = _curve(rate_anchor, metric_anchor, lower_is_better, "anchor")
    lr_t, m_t = _curve(rate_test, metric_test, lower_is_better, "test")
    lo, hi = _overlap(lr_a, lr_t, "log-rate")
    return _mean_on(lr_t, m_t, lo, hi) - _mean_on(lr_a, m_a, lo, hi)
