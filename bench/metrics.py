"""Scores the benches share: calibration of p(best), interval coverage, discrimination, change tracking.

Pure numpy on arrays the benches collect; tests hold each against hand-computed answers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["bootstrap_cindex", "brier", "change_correlation", "cindex", "coverage_by_horizon", "reliability",
           "truly_best"]


def truly_best(true_values: np.ndarray, sense: str = "min", rtol: float = 1e-6) -> np.ndarray:
    """Indicator ``[P]`` of the truly best plan(s): plans equal to the best (to ``rtol``) share it,
    so a true tie of ``k`` plans gives each ``1/k`` (and the indicator always sums to 1)."""
    v = np.asarray(true_values, np.float64) * (1.0 if sense == "min" else -1.0)
    best = v.min()
    hit = v <= best + rtol * max(1.0, abs(best))
    return hit / hit.sum()


def brier(p: np.ndarray, y: np.ndarray) -> float:
    """Mean over rankings (rows) of the multi-class Brier score ``Σ_plans (p - y)²`` (0 is perfect,
    2 the worst: sure of a wrong plan)."""
    return float(np.mean(np.sum((np.asarray(p, np.float64) - np.asarray(y, np.float64)) ** 2, axis=-1)))


def reliability(p: np.ndarray, y: np.ndarray, bins: int = 10) -> list[dict[str, Any]]:
    """Predicted probability bins (``[i/bins, (i+1)/bins)``, the last closed) against the observed
    frequency: per non-empty bin its count, mean prediction and mean outcome (``y`` may be
    fractional, e.g. a true tie's share)."""
    p, y = np.asarray(p, np.float64).ravel(), np.asarray(y, np.float64).ravel()
    which = np.minimum((p * bins).astype(int), bins - 1)
    out = []
    for b in range(bins):
        sel = which == b
        if sel.any():
            out.append({"lo": b / bins, "hi": (b + 1) / bins, "n": int(sel.sum()), "mean_predicted": float(p[sel].mean()),
                        "observed": float(y[sel].mean())})
    return out


def coverage_by_horizon(inside: Sequence[float], horizon: Sequence[Any]) -> dict[str, dict[str, float]]:
    """Share of ``inside`` (1: the value fell in its interval) per ``horizon`` label, with its count."""
    inside_a, h = np.asarray(inside, np.float64), np.asarray([str(x) for x in horizon])
    return {k: {"coverage": float(inside_a[h == k].mean()), "n": int((h == k).sum())}
            for k in sorted(set(h.tolist()), key=lambda s: (len(s), s))}


def cindex(risk: np.ndarray, time_: np.ndarray, flag: np.ndarray) -> float:
    """Harrell's concordance: among comparable pairs (the earlier time had the event), the share
    where the earlier one had the higher predicted risk (ties count half)."""
    num = den = 0.0
    for i in np.flatnonzero(flag > 0):
        later = time_ > time_[i]
        den += later.sum()
        num += (risk[i] > risk[later]).sum() + 0.5 * (risk[i] == risk[later]).sum()
    return float(num / den) if den else float("nan")


def bootstrap_cindex(risk: np.ndarray, time_: np.ndarray, flag: np.ndarray, groups: Sequence[Any], *,
                     n_boot: int = 200, level: float = 0.95, seed: int = 0) -> dict[str, float]:
    """C-index with a percentile bootstrap interval that resamples ``groups`` (patients: their
    origins are not independent) with replacement."""
    risk, time_, flag = np.asarray(risk, float), np.asarray(time_, float), np.asarray(flag, float)
    g = np.asarray([str(x) for x in groups])
    ids = np.unique(g)
    rows = [np.flatnonzero(g == i) for i in ids]
    rng = np.random.default_rng(seed)
    stats = []
    for _ in range(n_boot):
        take = np.concatenate([rows[i] for i in rng.integers(0, len(ids), len(ids))])
        c = cindex(risk[take], time_[take], flag[take])
        if np.isfinite(c):
            stats.append(c)
    a = (1.0 - level) / 2
    lo, hi = (np.quantile(stats, [a, 1 - a]) if stats else (float("nan"), float("nan")))
    return {"c_index": cindex(risk, time_, flag), "lo": float(lo), "hi": float(hi), "events": int((flag > 0).sum()),
            "origins": len(risk), "patients": len(ids), "boot": len(stats)}


def change_correlation(pred_change: np.ndarray, true_change: np.ndarray) -> float | None:
    """Pearson correlation of predicted and true change; ``None`` when either does not vary
    (a flat forecast has no correlation to show)."""
    a, b = np.asarray(pred_change, float), np.asarray(true_change, float)
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3 or np.std(a[ok]) < 1e-12 or np.std(b[ok]) < 1e-12:
        return None
    return float(np.corrcoef(a[ok], b[ok])[0, 1])
