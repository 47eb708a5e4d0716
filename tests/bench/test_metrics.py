"""The benches' scores (bench/metrics.py, bench/whatif.calibration) against hand-computed answers."""

from __future__ import annotations

import numpy as np
import pytest

from bench.metrics import (
    bootstrap_cindex,
    brier,
    change_correlation,
    cindex,
    coverage_by_horizon,
    reliability,
    truly_best,
)


def test_truly_best_splits_a_true_tie() -> None:
    assert truly_best(np.array([3.0, 1.0, 1.0, 2.0])) == pytest.approx([0, 0.5, 0.5, 0])
    assert truly_best(np.array([3.0, 1.0, 2.0]), "max") == pytest.approx([1, 0, 0])


def test_brier_and_reliability_by_hand() -> None:
    p = np.array([[0.7, 0.3], [0.5, 0.5]])
    y = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert brier(p, y) == pytest.approx((0.09 + 0.09 + 0.25 + 0.25) / 2)  # 0.34
    assert brier(np.array([[0.0, 1.0]]), np.array([[1.0, 0.0]])) == 2.0  # sure and wrong: the worst
    table = reliability(np.array([0.05, 0.15, 0.12, 0.95, 1.0]), np.array([0, 1, 0, 1, 1]))
    assert [(b["lo"], b["n"]) for b in table] == [(0.0, 1), (0.1, 2), (0.9, 2)]
    assert [b["mean_predicted"] for b in table] == pytest.approx([0.05, 0.135, 0.975])
    assert [b["observed"] for b in table] == pytest.approx([0.0, 0.5, 1.0])


def test_coverage_by_horizon_counts_each_horizon_apart() -> None:
    got = coverage_by_horizon([1, 0, 1, 1, 0], [30, 30, 90, 90, 365])
    assert list(got) == ["30", "90", "365"]
    assert got["30"] == {"coverage": 0.5, "n": 2} and got["90"]["coverage"] == 1.0 and got["365"]["coverage"] == 0.0


def test_cindex_known_answers() -> None:
    t, f = np.array([1.0, 2.0, 3.0]), np.array([1, 1, 0])
    # comparable pairs: (0,1), (0,2), (1,2)
    assert cindex(np.array([0.9, 0.5, 0.1]), t, f) == 1.0
    assert cindex(np.array([0.1, 0.5, 0.9]), t, f) == 0.0
    assert cindex(np.array([0.5, 0.5, 0.1]), t, f) == pytest.approx((0.5 + 1 + 1) / 3)
    assert np.isnan(cindex(np.array([0.5, 0.5, 0.1]), t, np.zeros(3)))


def test_bootstrap_cindex_resamples_patients_and_brackets_the_estimate() -> None:
    rng = np.random.default_rng(0)
    n = 400
    risk = rng.uniform(size=n)
    time_ = np.where(rng.uniform(size=n) < risk, rng.uniform(0, 365, n), 365.0)  # higher risk, earlier event
    flag = (time_ < 365).astype(float)
    groups = [f"p{i // 2}" for i in range(n)]  # two origins per patient
    got = bootstrap_cindex(risk, time_, flag, groups, n_boot=100, seed=1)
    assert got["c_index"] == pytest.approx(cindex(risk, time_, flag))
    assert got["lo"] < got["c_index"] < got["hi"] and got["hi"] - got["lo"] < 0.15 and got["c_index"] > 0.6
    assert (got["patients"], got["origins"], got["events"], got["boot"]) == (200, 400, int(flag.sum()), 100)


def test_change_correlation_of_a_flat_forecast_is_none() -> None:
    assert change_correlation(np.zeros(5), np.arange(5.0)) is None
    assert change_correlation(np.array([1.0, 2.0, 3.0]), np.array([1.0, 3.0, 2.0])) == pytest.approx(0.5)
    assert change_correlation(np.array([1.0, np.nan, 2.0, 3.0]), np.array([2.0, 9.0, 4.0, 6.0])) == pytest.approx(1.0)


def test_whatif_calibration_pools_every_ranking_for_the_twin_and_the_always_certain_ranking() -> None:
    from bench.whatif import calibration

    ranking = {"lab1": {"_p": [[0.7, 0.3]], "_naive": [[1.0, 0.0]], "_y": [[1.0, 0.0]]},
               "lab2": {"_p": [[0.6, 0.4]], "_naive": [[1.0, 0.0]], "_y": [[0.0, 1.0]]}}
    doc = calibration(ranking)
    assert doc["rankings"] == 2 and doc["plans_per_ranking"] == 2
    assert doc["twin"]["brier"] == pytest.approx((0.18 + 0.72) / 2)
    assert doc["always_certain"]["brier"] == pytest.approx((0.0 + 2.0) / 2)
    assert doc["twin"]["brier_top"] == pytest.approx((0.09 + 0.36) / 2)  # the top plan's p vs its outcome
    assert all(not any(k.startswith("_") for k in lab) for lab in ranking.values())  # raw rows popped
    certain = {b["lo"]: b for b in doc["always_certain"]["reliability"]}
    assert certain[0.9]["observed"] == 0.5 and certain[0.0]["observed"] == 0.5
