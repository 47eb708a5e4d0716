"""The ground-truth oracle: exact factual replay, counterfactual divergence, plan semantics, errors."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import TwinError
from synthetic import LABS, TARGET_LABS, Action, Plan, SynthConfig, generate_cohort, load_truth, simulate
from synthetic.truth import PatientTruth

HBA1C, LDL, SBP = LABS["hba1c"].code, LABS["ldl"].code, LABS["sbp"].code
ATORVASTATIN, METFORMIN = "617312", "860975"


@pytest.fixture(scope="module")
def truths(tmp_path_factory: pytest.TempPathFactory) -> list[PatientTruth]:
    out = tmp_path_factory.mktemp("oracle")
    generate_cohort(SynthConfig(patients=80, seed=21, years=2.0, confounding=0.8), out)
    return [load_truth(p) for p in sorted((out / "truth").glob("*.json"))]


def test_factual_plan_reproduces_recorded_history_exactly(truths: list[PatientTruth]) -> None:
    treated = [t for t in truths if t.treatments]
    assert len(treated) > 20
    horizon = max(t.follow_up_days for t in truths)
    res = simulate(truths, Plan.factual(), horizon, every=7)
    for i, t in enumerate(truths):
        n = len(t.trajectories["days"])
        assert list(res.days[:n]) == t.trajectories["days"]
        for code in TARGET_LABS:
            np.testing.assert_array_equal(res.labs[code][i, :n], np.array(t.trajectories[code]))
        np.testing.assert_array_equal(res.hidden["egfr_struct"][i, :n], np.array(t.trajectories["egfr_struct"]))
        np.testing.assert_array_equal(res.hazards["death"][i, :n], np.array(t.trajectories["hazard_death"]))


def test_factual_replay_matches_noise_free_values_behind_each_observation(truths: list[PatientTruth]) -> None:
    t = max(truths, key=lambda t: len(t.treatments))
    res = simulate(t, Plan.factual(), t.follow_up_days)
    for o in t.observations:
        assert res.labs[o["code"]][0, o["day"]] == o["true"]


def test_replay_from_later_origin_matches_history(truths: list[PatientTruth]) -> None:
    t = max(truths, key=lambda t: len(t.treatments))
    full = simulate(t, Plan.factual(), t.follow_up_days - 1)
    late = simulate(t, Plan.factual(), 100, origin=300)
    np.testing.assert_array_equal(late.labs[HBA1C][0], full.labs[HBA1C][0, 300:401])


def test_without_future_disturbances_the_replay_is_the_known_patient_forecast(truths: list[PatientTruth]) -> None:
    t = truths[0]
    origin = 200
    real = simulate(t, Plan.factual(), 300, origin=origin)
    calm = simulate(t, Plan.factual(), 300, origin=origin, future_disturbances=False)
    # the same state at the origin, then the disturbances only decay
    assert real.labs[SBP][0, 0] == calm.labs[SBP][0, 0]
    assert not np.array_equal(real.labs[SBP][0], calm.labs[SBP][0])
    assert np.std(np.diff(calm.labs[SBP][0, 100:])) < 0.2 * np.std(np.diff(real.labs[SBP][0, 100:]))
    # the future no longer depends on the disturbance seed: it is the same for another seed
    other = PatientTruth.from_json({**t.to_json(), "noise_seed": t.noise_seed + 1})
    calm0 = simulate([t, other], Plan.factual(), 300, origin=0, future_disturbances=False)
    np.testing.assert_array_equal(calm0.labs[SBP][0], calm0.labs[SBP][1])
    assert real.labs[LDL][0, -1] == calm.labs[LDL][0, -1]  # LDL has no disturbance


def test_different_plan_diverges_only_after_it_differs(truths: list[PatientTruth]) -> None:
    untreated = [t for t in truths if not any(s["drug"] == ATORVASTATIN for s in t.treatments)][:10]
    origin, start = 200, 50
    base = simulate(untreated, Plan.factual(), 300, origin=origin)
    alt = simulate(untreated, Plan((Action(ATORVASTATIN, 40.0, start_day=start),)), 300, origin=origin)
    # identical up to the day the plan's first dose can act (dose on day d moves markers from d + 2)
    np.testing.assert_array_equal(alt.labs[LDL][:, : start + 2], base.labs[LDL][:, : start + 2])
    assert np.all(alt.labs[LDL][:, start + 2] < base.labs[LDL][:, start + 2])
    assert np.all(alt.labs[LDL][:, -1] < base.labs[LDL][:, -1] - 10.0)
    # drugs the plan does not name keep their factual course
    np.testing.assert_array_equal(alt.labs[SBP], base.labs[SBP])


def test_plan_takes_over_a_named_drug_from_its_first_action(truths: list[PatientTruth]) -> None:
    on_met = [t for t in truths if any(s["drug"] == METFORMIN and s["start_day"] < 100 for s in t.treatments)][:5]
    assert on_met
    origin = 100
    base = simulate(on_met, Plan.factual(), 200, origin=origin)
    stop = simulate(on_met, Plan((Action(METFORMIN, 0.0, start_day=30),)), 200, origin=origin)
    np.testing.assert_array_equal(stop.labs[HBA1C][:, :32], base.labs[HBA1C][:, :32])
    assert np.all(stop.labs[HBA1C][:, -1] > base.labs[HBA1C][:, -1])


def test_untreated_differs_from_factual_only_for_treated(truths: list[PatientTruth]) -> None:
    never = [t for t in truths if not t.treatments][:5]
    a = simulate(never, Plan.factual(), 365)
    b = simulate(never, Plan.untreated(), 365)
    for code in TARGET_LABS:
        np.testing.assert_array_equal(a.labs[code], b.labs[code])


def test_vectorised_pairs_equal_single_runs(truths: list[PatientTruth]) -> None:
    plans = [Plan.factual(), Plan.untreated(), Plan((Action(ATORVASTATIN, 80.0, 10, 90),))]
    pats = truths[:3]
    batch = simulate(pats, plans, 150, origin=[0, 50, 120])
    for i, (t, pl, o) in enumerate(zip(pats, plans, (0, 50, 120), strict=True)):
        one = simulate(t, pl, 150, origin=o)
        np.testing.assert_array_equal(batch.labs[LDL][i], one.labs[LDL][0])


def test_hazards_survival_and_noise(truths: list[PatientTruth]) -> None:
    res = simulate(truths[:4], Plan.factual(), 365, noise=True, seed=3)
    s = res.survival["death"]
    assert np.all(s[:, 0] == 1.0) and np.all(np.diff(s, axis=1) <= 0) and np.all(s > 0)
    assert np.all(res.hazards["hospitalisation"] > 0)
    assert res.noisy is not None
    diff = res.noisy[HBA1C] - res.labs[HBA1C]
    assert 0.03 < np.std(diff) < 0.3  # measurement noise sd 0.12 %, reported to 0.1 %
    again = simulate(truths[:4], Plan.factual(), 365, noise=True, seed=3)
    np.testing.assert_array_equal(again.noisy[HBA1C], res.noisy[HBA1C])  # type: ignore[index]


def test_bad_inputs_raise_twin_errors(truths: list[PatientTruth]) -> None:
    with pytest.raises(TwinError, match="unknown drug"):
        Action("123", 10.0)
    with pytest.raises(TwinError, match="dose"):
        Action(ATORVASTATIN, -1.0)
    with pytest.raises(TwinError, match="expected 1 or 3"):
        simulate(truths[:3], [Plan.factual(), Plan.untreated()], 10)
    with pytest.raises(TwinError, match="origin"):
        simulate(truths[0], Plan.factual(), 10, origin=-1)
