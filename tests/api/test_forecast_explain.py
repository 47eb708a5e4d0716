"""``explain`` on ``POST /v1/twins/{id}/forecast`` (the records that drove the forecast, which the
viewer shows) and the ranking's resolved ``target``, over real HTTP on the model trained through
the API."""

from __future__ import annotations

import pytest

from service.limits import EXPLAIN_STEPS
from tests.api.conftest import LiveServer
from tests.api.helpers import assert_problem
from twin.twin import PATIENT_SUMMARY


@pytest.fixture(scope="module")
def spec(live: LiveServer, pid: str) -> dict:
    with live.client("sim") as c:
        return next(m for m in c.get("/v1/models").json()["models"] if m["name"] == "tiny")["spec"]


def test_explain_names_the_patients_records_that_drove_the_forecast(live: LiveServer, pid: str, spec: dict) -> None:
    body = {"model": "tiny", "horizon_days": 90, "step_days": 30, "n_samples": 8}
    with live.client("sim") as c:
        plain = c.post(f"/v1/twins/{pid}/forecast", json=body).json()
        r = c.post(f"/v1/twins/{pid}/forecast", json={**body, "explain": True})
    with live.client("reader") as c:
        graph = {n["id"]: n for n in c.get(f"/v1/patients/{pid}/graph").json()["nodes"]}
    assert r.status_code == 200, r.text
    doc = r.json()
    assert plain["drivers"] == [] and plain["explained_lab"] is None
    assert doc["labs"] == plain["labs"] and doc["event_risk"] == plain["event_risk"]  # explaining changes nothing
    assert doc["explained_lab"] == spec["targets"][0]["code"] and doc["explained_day"] == 90
    drivers = doc["drivers"]
    assert 0 < len(drivers) <= 10
    assert [abs(d["score"]) for d in drivers] == sorted((abs(d["score"]) for d in drivers), reverse=True)
    for d in drivers:  # each driver is one of this patient's records, named as stored
        node = graph[d["node_id"]]
        assert node["patient_id"] == pid
        # the patient node is described as what the encoder keeps of the whole history
        display = PATIENT_SUMMARY if node["type"] == "Patient" else node["display"]
        assert (d["code"], d["display"]) == (node["code"], display)
    # the attribution is counted in the cost: EXPLAIN_STEPS solves per member, 3 forward-solve equivalents each
    extra = doc["n_members"] * EXPLAIN_STEPS * 3
    assert doc["cost"]["solves"] == plain["cost"]["solves"] + extra
    assert doc["cost"]["trajectories"] == plain["cost"]["trajectories"] + extra
    assert doc["cost"]["units"] > plain["cost"]["units"]


def test_explain_another_lab_and_an_unknown_one(live: LiveServer, pid: str, spec: dict) -> None:
    code = spec["targets"][-1]["code"]
    with live.client("sim") as c:
        doc = c.post(f"/v1/twins/{pid}/forecast", json={"model": "tiny", "horizon_days": 30, "n_samples": 4,
                                                         "explain": True, "explain_lab": code}).json()
        bad = c.post(f"/v1/twins/{pid}/forecast", json={"model": "tiny", "horizon_days": 30, "n_samples": 4,
                                                         "explain": True, "explain_lab": "no-such-lab"})
    assert doc["explained_lab"] == code and doc["drivers"]
    problem = assert_problem(bad, 422)
    assert "'no-such-lab' is not a forecast target" in problem["detail"] and code in problem["detail"]


def test_explain_over_budget_is_refused_before_any_work(live: LiveServer, pid: str) -> None:
    with live.client("sim") as c:
        r = c.post(f"/v1/twins/{pid}/forecast", json={"model": "tiny", "horizon_days": 3650, "step_days": 1,
                                                       "n_samples": 512, "explain": True})
    problem = assert_problem(r, 422)
    members = 2  # the tiny model's ensemble
    extra = members * EXPLAIN_STEPS * 3
    assert problem["cost"]["solves"] == members + extra
    assert problem["cost"]["trajectories"] == 512 * members + extra
    assert "over the ceiling" in problem["detail"]


def test_ranking_names_the_lab_its_objective_scores(live: LiveServer, pid: str, spec: dict) -> None:
    hba1c = next(t["code"] for t in spec["targets"] if "A1c" in t["name"])
    body = {"model": "tiny", "horizon_days": 90, "n_samples": 8, "objective": "minimise HbA1c at 90d",
            "plans": [{"name": "none", "baseline": "none"}, {"name": "current", "baseline": "current"}]}
    with live.client("sim") as c:
        r = c.post(f"/v1/twins/{pid}/scenarios", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["ranking"]["target"] == hba1c
