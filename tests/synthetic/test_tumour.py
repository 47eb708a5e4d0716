"""The tumour benchmark simulator (§2 of shared/benchmarks/tumour.md), its FHIR export and baselines."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from bench.tumour_baselines import persistence_predictions, sequence_predictions, train_sequence_model
from graph import ingest_paths, open_store
from synthetic.tumour import (
    SLIDING_PLANS,
    V_MAX,
    TumourCohort,
    diameter,
    normalised_rmse,
    one_step_counterfactuals,
    simulate_cohort,
    sliding_treatment_counterfactuals,
)
from synthetic.tumour_fhir import (
    CARBOPLATIN_MG_PER_M2,
    MCODE_DOSE_EXTENSION,
    TYPE_SYSTEM,
    day_of,
    patient_bundle,
    patient_ids,
    write_bundles,
)

UCUM = "http://unitsofmeasure.org"


@pytest.fixture(scope="module")
def cohort() -> TumourCohort:
    return simulate_cohort(60, 2.0, seed=7)


@pytest.fixture(scope="module")
def endings() -> TumourCohort:
    """A cohort large enough to hold deaths (about 1 in 1000) and recoveries."""
    c = simulate_cohort(3000, 0.0, seed=0)
    assert c.died.any() and c.recovered.any()
    return c


def _active(c: TumourCohort) -> np.ndarray:
    return np.arange(c.t_max)[None, :] < c.lengths[:, None]


def test_same_seed_same_cohort_other_seed_other_cohort() -> None:
    a, b, other = simulate_cohort(40, 2.0, 3), simulate_cohort(40, 2.0, 3), simulate_cohort(40, 2.0, 4)
    for name in ("volumes", "chemo", "radio", "concentration", "lengths", "alpha", "eps", "patient_type"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert not np.array_equal(a.volumes[:, 0], other.volumes[:, 0])


def test_shapes_and_nan_after_the_end(cohort: TumourCohort) -> None:
    n, t = cohort.n_patients, cohort.t_max
    assert cohort.volumes.shape == (n, t + 1) and cohort.chemo.shape == cohort.eps.shape == (n, t)
    defined = np.arange(t + 1)[None, :] <= cohort.lengths[:, None]
    assert np.isfinite(cohort.volumes[defined]).all() and np.isnan(cohort.volumes[~defined]).all()
    assert not cohort.chemo[~_active(cohort)].any() and not cohort.radio[~_active(cohort)].any()
    assert set(np.unique(cohort.patient_type)) <= {1, 2, 3}
    np.testing.assert_allclose(cohort.beta, cohort.alpha / 10)


def test_gamma_zero_assigns_half_and_ignores_size() -> None:
    c = simulate_cohort(300, 0.0, seed=5)
    act = _active(c)
    for a in (c.chemo, c.radio):
        assert 0.47 < a[act].mean() < 0.53
        assert abs(np.corrcoef(a[act], diameter(c.volumes[:, :-1])[act])[0, 1]) < 0.05


def test_larger_gamma_treats_larger_tumours_more() -> None:
    corr = []
    for gamma in (0.0, 2.0, 4.0):
        c = simulate_cohort(300, gamma, seed=5)
        act = _active(c)
        corr.append(np.corrcoef(c.chemo[act], diameter(c.volumes[:, :-1])[act])[0, 1])
    assert corr[0] + 0.05 < corr[1] < corr[2]


def test_chemo_dose_adds_five_and_halves_each_day(cohort: TumourCohort) -> None:
    act = _active(cohort)
    prev = np.concatenate([np.zeros((cohort.n_patients, 1)), cohort.concentration[:, :-1]], axis=1)
    np.testing.assert_allclose(cohort.concentration[act], (0.5 * prev + 5.0 * cohort.chemo)[act], rtol=1e-12)


def test_death_clips_at_v_max_and_ends_the_sequence(endings: TumourCohort) -> None:
    for i in np.flatnonzero(endings.died):
        end = endings.lengths[i]
        assert endings.volumes[i, end] == pytest.approx(1150.35, abs=0.01) == V_MAX
        assert (endings.volumes[i, :end] <= V_MAX).all() and np.isnan(endings.volumes[i, end + 1:]).all()
    for i in np.flatnonzero(endings.recovered):
        assert endings.volumes[i, endings.lengths[i]] == 0.0 and endings.lengths[i] <= endings.t_max


def test_one_step_counterfactual_of_the_factual_action_is_the_factual_next_volume(cohort: TumourCohort) -> None:
    one = one_step_counterfactuals(cohort)
    assert len(one.patient) == 4 * cohort.lengths.sum()
    assert one.factual.sum() == cohort.lengths.sum()
    f = one.factual
    np.testing.assert_array_equal(one.volume[f], cohort.volumes[one.patient[f], one.t[f] + 1])
    # chemo and radio each shrink the tumour relative to no treatment, with the same noise
    v = one.volume.reshape(-1, 4)
    alive = (v > 0).all(axis=1) & (v < V_MAX).all(axis=1)
    assert (v[alive, 1] < v[alive, 0]).all() and (v[alive, 2] < v[alive, 0]).all() and (v[alive, 3] < v[alive, 1]).all()


def test_sliding_set_starts_where_the_one_step_set_of_the_next_day_does(cohort: TumourCohort) -> None:
    one, sl = one_step_counterfactuals(cohort), sliding_treatment_counterfactuals(cohort)
    assert sl.volume.shape == (len(sl.patient), 5) and list(sl.taus) == [2, 3, 4, 5, 6]
    assert len(sl.patient) % len(SLIDING_PLANS) == 0 and (sl.t + 6 <= cohort.t_max).all()
    np.testing.assert_array_equal(sl.actions[:, 1:], SLIDING_PLANS[sl.plan])
    np.testing.assert_array_equal(sl.actions[:, 0, 0], cohort.chemo[sl.patient, sl.t])
    lookup = {(p, t, a): v for p, t, a, v in zip(one.patient, one.t, one.action, one.volume, strict=True)}
    first = sl.actions[:, 1, 0] + 2 * sl.actions[:, 1, 1]  # the plan's action on day t+1
    tau2 = [lookup[(p, t + 1, a)] for p, t, a in zip(sl.patient, sl.t, first, strict=True)]
    np.testing.assert_array_equal(sl.volume[:, 0], tau2)


def test_normalised_rmse_orig_and_pooled() -> None:
    true = np.array([100.0, 100.0, 100.0, np.nan])
    pred = np.array([100.0, 100.0 + 3 * V_MAX / 100, 100.0 + V_MAX / 100, 0.0])
    steps = np.array([0, 0, 1, 1])
    assert normalised_rmse(pred, true) == pytest.approx(np.sqrt(10 / 3))
    assert normalised_rmse(pred, true, steps) == pytest.approx(np.sqrt((4.5 + 1) / 2))


def test_fhir_export_shapes(tmp_path: Path, cohort: TumourCohort) -> None:
    paths = write_bundles(cohort, tmp_path)
    ids = patient_ids(cohort)
    assert [p.stem for p in paths] == ids and len(set(ids)) == cohort.n_patients
    i = int(np.argmax(cohort.chemo.sum(1) + cohort.radio.sum(1)))
    bundle = json.loads(paths[i].read_text())
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "transaction"
    by_type: dict[str, list[dict]] = {}
    for e in bundle["entry"]:
        r = e["resource"]
        by_type.setdefault(r["resourceType"], []).append(r)
        assert e["request"]["url"] == f"{r['resourceType']}/{r['id']}"
        if r["resourceType"] != "Patient":
            assert r["subject"] == {"reference": f"Patient/{ids[i]}"}
    assert by_type["Patient"][0]["gender"] in ("female", "male") and "birthDate" in by_type["Patient"][0]
    obs = by_type["Observation"]
    assert len(obs) == cohort.lengths[i] + 1
    assert obs[0]["code"]["coding"][0] == {"system": "http://loinc.org", "code": "21889-1", "display": "Size Tumor"}
    q = obs[-1]["valueQuantity"]
    assert q["system"] == UCUM and q["code"] == "cm3" and q["value"] == cohort.volumes[i, cohort.lengths[i]]
    assert [day_of(datetime.fromisoformat(o["effectiveDateTime"])) for o in obs] == list(range(len(obs)))
    meds = by_type["MedicationAdministration"]
    assert [day_of(datetime.fromisoformat(m["effectiveDateTime"])) for m in meds] == list(np.flatnonzero(cohort.chemo[i]))
    assert meds[0]["medicationCodeableConcept"]["coding"][0]["code"] == "40048"
    assert meds[0]["dosage"]["dose"] == {"value": CARBOPLATIN_MG_PER_M2, "unit": "mg/m2", "system": UCUM, "code": "mg/m2"}
    procs = by_type["Procedure"]
    assert [day_of(datetime.fromisoformat(p["performedDateTime"])) for p in procs] == list(np.flatnonzero(cohort.radio[i]))
    assert procs[0]["code"]["coding"][0]["code"] == "1287742003"
    ext = procs[0]["extension"][0]
    assert ext["url"] == MCODE_DOSE_EXTENSION
    assert ext["extension"] == [{"url": "totalDoseDelivered",
                                 "valueQuantity": {"value": 200.0, "unit": "cGy", "system": UCUM, "code": "cGy"}}]
    (cond,) = by_type["Condition"]
    assert cond["code"]["coding"][0]["system"] == TYPE_SYSTEM
    assert cond["code"]["coding"][0]["code"] == f"type-{cohort.patient_type[i]}"


def test_fhir_death_is_the_patients_deceased_time(endings: TumourCohort) -> None:
    i = int(np.flatnonzero(endings.died)[0])
    patient = patient_bundle(endings, i, "p1")["entry"][0]["resource"]
    assert day_of(datetime.fromisoformat(patient["deceasedDateTime"])) == endings.lengths[i]
    alive = int(np.flatnonzero(~endings.died)[0])
    assert "deceasedDateTime" not in patient_bundle(endings, alive, "p2")["entry"][0]["resource"]


@pytest.mark.parametrize("url", ["memory://", "sqlite"])
def test_a_bundle_ingests_with_one_lab_per_volume(tmp_path: Path, cohort: TumourCohort, url: str) -> None:
    paths = write_bundles(cohort, tmp_path / "fhir")
    i = int(np.argmax(cohort.chemo.sum(1)))
    with open_store(url if url == "memory://" else f"sqlite:///{tmp_path / 'store.db'}") as store:
        ingest_paths(store, [paths[i]])
        counts = store.counts().nodes
    assert counts["Patient"] == 1 and counts["Condition"] == 1
    assert counts["Lab"] == int(np.isfinite(cohort.volumes[i]).sum()) == cohort.lengths[i] + 1
    assert counts["Medication"] == cohort.chemo[i].sum() and counts["Procedure"] == cohort.radio[i].sum()


def test_persistence_one_step_rmse_is_finite(cohort: TumourCohort) -> None:
    one, sl = one_step_counterfactuals(cohort), sliding_treatment_counterfactuals(cohort)
    r1 = normalised_rmse(persistence_predictions(cohort, one), one.volume, one.t)
    ps = persistence_predictions(cohort, sl)
    assert ps.shape == sl.volume.shape
    assert np.isfinite(r1) and 0 < r1 < 10
    assert np.isfinite([normalised_rmse(ps[:, k], sl.volume[:, k]) for k in range(5)]).all()


@pytest.mark.slow
def test_gru_beats_persistence() -> None:
    train, val, test = simulate_cohort(200, 2.0, 0), simulate_cohort(50, 2.0, 1), simulate_cohort(200, 2.0, 2)
    model = train_sequence_model(train, val, epochs=8, seed=0)
    one, sl = one_step_counterfactuals(test), sliding_treatment_counterfactuals(test)
    gru, pers = sequence_predictions(model, test, one), persistence_predictions(test, one)
    assert normalised_rmse(gru, one.volume, one.t) < normalised_rmse(pers, one.volume, one.t)
    gru_s, pers_s = sequence_predictions(model, test, sl), persistence_predictions(test, sl)
    assert normalised_rmse(gru_s[:, -1], sl.volume[:, -1]) < normalised_rmse(pers_s[:, -1], sl.volume[:, -1])
