"""Forecast and scenario endpoints over real HTTP, on a model trained through the API."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.api.conftest import Cohort, LiveServer
from tests.api.helpers import assert_problem

PLANS = [
    {"name": "no treatment", "baseline": "none"},
    {"name": "metformin", "baseline": "none",
     "actions": [{"drug": "metformin", "dose": 1000, "unit": "mg", "frequency": "bid", "start": 0}]},
    {"name": "current", "baseline": "current"},
]


@pytest.fixture(scope="module")
def pid(cohort: Cohort, trained_model: dict) -> str:
    assert trained_model["status"] == "succeeded", trained_model
    return cohort.patient_ids[0]


def test_forecast(live: LiveServer, pid: str) -> None:
    body = {"model": "tiny", "horizon_days": 90, "step_days": 30, "n_samples": 8}
    with live.client("sim") as c:
        r = c.post(f"/v1/twins/{pid}/forecast", json=body)
        again = c.post(f"/v1/twins/{pid}/forecast", json=body)
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["patient_id"] == pid and doc["horizon_days"] == 90 and doc["n_members"] == 2
    assert doc["labs"], "the model forecasts at least one target lab"
    for lab in doc["labs"].values():
        assert lab["days"] == [0.0, 30.0, 60.0, 90.0]
        assert all(lo <= med <= hi for lo, med, hi in zip(lab["p05"], lab["median"], lab["p95"], strict=True))
    assert all(0.0 <= v <= 1.0 for v in doc["event_risk"].values())
    assert again.json() == doc  # seeded: same request, same numbers


def test_forecast_as_of_moves_the_origin(live: LiveServer, pid: str) -> None:
    with live.client("sim") as c:
        doc = c.post(f"/v1/twins/{pid}/forecast",
                     json={"model": "tiny", "as_of": "2019-09-01T00:00:00Z", "horizon_days": 30}).json()
    assert doc["origin"] <= "2019-09-01T00:00:00Z"


def test_scenarios_compare_and_rank(live: LiveServer, pid: str) -> None:
    body = {"model": "tiny", "plans": PLANS, "horizon_days": 180, "n_samples": 16,
            "objective": "minimise HbA1c at 180d", "thresholds": [{"lab": "HbA1c", "op": ">", "value": 8}]}
    with live.client("sim") as c:
        r = c.post(f"/v1/twins/{pid}/scenarios", json=body)
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["plans"] == [p["name"] for p in PLANS] and doc["reference"] == "no treatment"
    ref = next(row for row in doc["results"] if row["plan"] == "no treatment")
    for lab in ref["labs"].values():  # the reference differs from itself by exactly zero
        assert all(v["diff_vs_reference"]["median"] == 0 for v in lab["at_day"].values())
    ranking = doc["ranking"]
    assert sorted(e["plan"] for e in ranking["plans"]) == sorted(doc["plans"])
    assert 0.0 <= ranking["p_top_is_best"] <= 1.0


def test_scenario_errors_name_the_plan(live: LiveServer, pid: str) -> None:
    unknown = {"name": "mystery", "actions": [{"drug": "unobtainium", "dose": 1, "unit": "mg"}]}
    with live.client("sim") as c:
        doc = assert_problem(c.post(f"/v1/twins/{pid}/scenarios", json={"model": "tiny", "plans": [unknown]}), 422)
        assert doc["plan"]["plan"] == "mystery"
        doc = assert_problem(c.post(f"/v1/twins/{pid}/scenarios",
                                    json={"model": "tiny", "plans": [PLANS[0], PLANS[0]]}), 422)
        assert "unique" in doc["detail"]
        doc = assert_problem(c.post(f"/v1/twins/{pid}/scenarios", json={
            "model": "tiny", "plans": [{"name": "neg", "actions": [{"drug": "metformin", "dose": -5}]}]}), 422)
        assert any("dose" in e["field"] for e in doc["errors"])
        assert_problem(c.post(f"/v1/twins/{pid}/scenarios",
                              json={"model": "tiny", "plans": PLANS, "objective": "make it better"}), 422)


def test_twin_404s_and_scopes(live: LiveServer, pid: str) -> None:
    with live.client("sim") as c:
        assert "unknown-model" in assert_problem(
            c.post(f"/v1/twins/{pid}/forecast", json={"model": "nope"}), 404)["type"]
        assert_problem(c.post("/v1/twins/nobody/forecast", json={"model": "tiny"}), 404)
        assert_problem(c.post("/v1/twins/nobody/scenarios", json={"model": "tiny", "plans": PLANS}), 404)
    with live.client("reader") as c:
        assert_problem(c.post(f"/v1/twins/{pid}/forecast", json={"model": "tiny"}), 403)


def test_forecasts_are_audited(live: LiveServer, pid: str) -> None:
    lines = [json.loads(x) for x in Path(live.settings.audit_log).read_text().splitlines()]
    mine = [e for e in lines if e["patient_id"] == pid and e["action"] in ("twin.forecast", "twin.scenarios")]
    assert {e["action"] for e in mine} == {"twin.forecast", "twin.scenarios"}
    assert all(e["key_id"] == live.key_ids["sim"] or e["status"] in (403,) for e in mine)
