"""Post-hoc interval calibration (twin.calibration): known answers, a toy fit, and where it is applied."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from graph.store.sqlite import SQLiteStore
from twin.calibration import IntervalCalibration, fit_scales, required_scale
from twin.model.checkpoint import TwinEnsemble


def test_required_scale_uses_the_half_of_the_band_on_the_observations_side() -> None:
    y = np.array([10.0, 4.0, 7.0, 13.0])
    med, lo, hi = np.full(4, 7.0), np.full(4, 5.0), np.full(4, 11.0)  # lower half 2, upper half 4
    assert required_scale(y, med, lo, hi) == pytest.approx([0.75, 1.5, 0.0, 1.5])
    # the smallest scale covering 3 of 4 is 1.5, 1 of 4 needs 0
    assert fit_scales(np.array([0.75, 1.5, 0.0, 1.5]), 0.75) == 1.5
    assert fit_scales(np.array([0.75, 1.5, 0.0, 1.5]), 0.25) == 0.0
    assert fit_scales(np.array([]), 0.9) == 1.0


def test_a_band_of_constant_width_is_fitted_to_a_spread_that_grows_with_the_horizon() -> None:
    rng = np.random.default_rng(0)
    n = 20_000
    t = rng.uniform(0.0, 365.0, n)
    lab = rng.integers(0, 2, n)
    spread = np.where(lab == 0, 0.5 + t / 100.0, 1.0)  # lab 0 drifts, lab 1 does not
    y = spread * rng.standard_normal(n)
    med, lo, hi = np.zeros(n), np.full(n, -1.645), np.full(n, 1.645)  # a 90 % band for sd 1 at every day
    inside = (lo <= y) & (y <= hi)
    cal = IntervalCalibration.fit(t, lab, required_scale(y, med, lo, hi), ["a", "b"], level=0.9, bins=5)
    assert len(cal.days) == 5 and cal.days == tuple(sorted(cal.days)) and sum(cal.counts["a"]) == (lab == 0).sum()
    # fresh observations: covered at 90 % around every node once widened (the scale is held
    # flat before the first and after the last node, so the far ends of those bins are not)
    y2 = spread * rng.standard_normal(n)
    codes = ["a", "b"]
    for j in (0, 1):
        for node in cal.days:
            sel = (lab == j) & (np.abs(t - node) < 15)
            k = cal.scale(codes, t[sel])[:, j]
            cover = np.mean(np.abs(y2[sel]) <= 1.645 * k)
            assert cover == pytest.approx(0.9, abs=0.035), (j, node, cover)
    early, late = (lab == 0) & (t < 73), (lab == 0) & (t >= 292)
    assert np.mean(inside[early]) > 0.92 and np.mean(inside[late]) < 0.5  # the uncalibrated band
    # a lab that does not drift keeps a flat scale near 1; the drifting lab's scale grows
    assert np.allclose(cal.scales["b"], 1.0, atol=0.06)
    assert all(np.diff(cal.scales["a"]) > 0) and cal.scales["a"][-1] > 3 * cal.scales["a"][0]


def test_scale_interpolates_between_nodes_holds_outside_and_round_trips() -> None:
    cal = IntervalCalibration((30.0, 180.0), {"x": (1.0, 2.5)}, 0.9, {"x": (40, 50)})
    k = cal.scale(["x", "unknown"], np.array([0.0, 30.0, 105.0, 180.0, 400.0]))
    assert k[:, 0] == pytest.approx([1.0, 1.0, 1.75, 2.5, 2.5]) and (k[:, 1] == 1.0).all()
    lo, hi = cal.widen(np.full((2, 1), 4.0), np.full((2, 1), 5.0), np.full((2, 1), 7.0), ["x"], np.array([30.0, 180.0]))
    assert lo[:, 0] == pytest.approx([4.0, 2.5]) and hi[:, 0] == pytest.approx([7.0, 10.0])
    assert IntervalCalibration.from_dict(cal.to_dict()) == cal


def test_training_stores_a_calibration_that_predict_applies(toy_model: Path, toy_store: SQLiteStore,
                                                            tmp_path: Path) -> None:
    from twin.features import build_graph, dose_schedule
    from twin.predict import predict
    from twin.twin import Twin

    ens = TwinEnsemble.load(toy_model)
    cal = ens.interval_calibration
    assert cal is not None and cal.level == 0.9 and set(cal.scales) == set(ens.spec.vocab.target_labs)
    assert all(k >= 0 for v in cal.scales.values() for k in v)
    # saved and loaded with the checkpoint
    again = TwinEnsemble.load(ens.save(tmp_path / "m.pt"))
    assert again.interval_calibration == cal
    # predict: the band scaled by a known factor around the same median (toy targets are untransformed)
    tw = Twin.load(toy_store, "toy6", ens)
    g = build_graph(tw.records, tw.as_of, ens.spec, ens.image_encoder)
    doses = dose_schedule(tw.current_plan(), ens.spec.vocab, ens.spec.norms, 181, strict=False)[None]
    t_q = torch.tensor([0.0, 30.0, 90.0, 180.0])
    raw = predict(ens, [g], doses, t_q, n_samples=4, seed=1, calibrated=False)
    ens.interval_calibration = IntervalCalibration((0.0, 180.0), {c: (2.0, 3.0) for c in ens.spec.vocab.target_labs})
    got = predict(ens, [g], doses, t_q, n_samples=4, seed=1)
    k = np.array([2.0, 2.0 + 1 / 6, 2.5, 3.0])[:, None]
    np.testing.assert_allclose(got.median, raw.median)
    np.testing.assert_allclose(got.p95[0] - got.median[0], k * (raw.p95[0] - raw.median[0]), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(got.median[0] - got.p05[0], k * (raw.median[0] - raw.p05[0]), rtol=1e-6, atol=1e-6)



def test_an_invalid_calibration_is_refused_and_a_checkpoint_holding_one_names_the_file(toy_model: Path,
                                                                                     tmp_path: Path) -> None:
    from core.errors import ModelError

    with pytest.raises(ValueError, match="increasing"):
        IntervalCalibration((90.0, 30.0), {"x": (1.0, 1.0)})
    with pytest.raises(ValueError, match="lab x: expected 2 finite scales"):
        IntervalCalibration((30.0, 90.0), {"x": (1.0,)})
    doc = torch.load(toy_model, weights_only=True)
    doc["interval_calibration"] = {"days": [30.0], "scales": {"x": [-1.0]}}
    bad = tmp_path / "bad.pt"
    torch.save(doc, bad)
    with pytest.raises(ModelError, match=r"bad\.pt: its interval calibration is invalid"):
        TwinEnsemble.load(bad)
