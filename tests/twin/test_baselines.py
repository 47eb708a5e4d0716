"""Simple forecasting baselines: known answers and invariants."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from twin.baselines import LabHistory, last_value, linear_trend, smoothed_level

_values = st.lists(st.floats(-5, 5, allow_nan=False), min_size=1, max_size=12)


def _history(vals: list[float], step_days: float = 30.0) -> LabHistory:
    days = -step_days * np.arange(len(vals))[::-1].astype(float)
    return LabHistory([days, np.zeros(0)], [np.asarray(vals, float), np.zeros(0)])


def test_known_answers() -> None:
    h = _history([1.0, 3.0], step_days=365.0)  # values a year ago and today
    t = np.array([0.0, 180.0])
    w = np.exp(-1.0)
    np.testing.assert_allclose(smoothed_level(h, t)[:, 0], (w * 1.0 + 3.0) / (w + 1.0))
    np.testing.assert_allclose(last_value(h, t)[:, 0], 3.0)
    np.testing.assert_allclose(linear_trend(h, t)[:, 0], 3.0 + 2.0 * t / 365.0)
    assert np.all(smoothed_level(h, t)[:, 1] == 0.0)  # never measured: the cohort mean


@given(_values)
def test_smoothed_level_is_a_weighted_mean(vals: list[float]) -> None:
    lvl = smoothed_level(_history(vals), np.array([0.0, 365.0]))[:, 0]
    assert lvl[0] == lvl[1]
    assert min(vals) - 1e-9 <= lvl[0] <= max(vals) + 1e-9
    # a very long memory gives the plain mean, a very short one the last value
    assert np.isclose(smoothed_level(_history(vals), np.zeros(1), tau_days=1e12)[0, 0], np.mean(vals))
    assert np.isclose(smoothed_level(_history(vals), np.zeros(1), tau_days=1e-3)[0, 0], vals[-1])
