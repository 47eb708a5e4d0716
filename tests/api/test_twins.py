"""Forecast and scenario endpoints over real HTTP, on a model trained through the API."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from tests.api.conftest import LiveServer
from tests.api.helpers import assert_problem


@pytest.fixture(scope="module")
def treatment(live: LiveServer, pid: str) -> dict:
    """The tiny model's first treatment input as the model listing describes it (code, name, kind, unit)."""
    with live.client("sim") as c:
        models = c.get("/v1/models").json()["models"]
    spec = next(m for m in models if m["name"] == "tiny")["spec"]
    assert spec["treatments"], spec
    return dict(spec["treatments"][0])


@pytest.fixture(scope="module")
def plans(treatment: dict) -> list[dict]:
    """No treatment, the model's first treatment by its name in the records, and current therapy."""
    return [
        {"name": "no treatment", "baseline": "none"},
        {"name": "treated", "baseline": "none",
         "actions": [{"treatment": treatment["name"] or treatment["code"], "dose": 1000, "frequency": "bid"}]},
        {"name": "current", "baseline": "current"},
    ]


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


def test_scenarios_compare_and_rank(live: LiveServer, pid: str, plans: list[dict]) -> None:
    body = {"model": "tiny", "plans": plans, "horizon_days": 180, "n_samples": 16,
            "objective": "minimise HbA1c at 180d", "thresholds": [{"lab": "HbA1c", "op": ">", "value": 8}]}
    with live.client("sim") as c:
        r = c.post(f"/v1/twins/{pid}/scenarios", json=body)
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["plans"] == [p["name"] for p in plans] and doc["reference"] == "no treatment"
    ref = next(row for row in doc["results"] if row["plan"] == "no treatment")
    for lab in ref["labs"].values():  # the reference differs from itself by exactly zero
        assert all(v["diff_vs_reference"]["median"] == 0 for v in lab["at_day"].values())
    ranking = doc["ranking"]
    assert sorted(e["plan"] for e in ranking["plans"]) == sorted(doc["plans"])
    assert 0.0 <= ranking["p_top_is_best"] <= 1.0
    # near-ties are reported as ties: the top plan and those whose advantage interval contains 0
    assert ranking["tied"][0] == ranking["plans"][0]["plan"]
    assert ranking["tied"] == [e["plan"] for e in ranking["plans"] if e["tied_with_top"]]
    assert all(e["advantage_lo"] <= 0 <= e["advantage_hi"] for e in ranking["plans"] if e["tied_with_top"])
    assert ranking["p_tied_best"] == pytest.approx(sum(e["p_best"] for e in ranking["plans"] if e["tied_with_top"]))
    assert ranking["verdict"]


def test_scenario_errors_name_the_plan(live: LiveServer, pid: str, plans: list[dict], treatment: dict) -> None:
    unknown = {"name": "mystery", "actions": [{"treatment": "unobtainium", "dose": 1}]}
    other_unit = "Gy" if treatment["unit"] != "Gy" else "mg"
    wrong_unit = {"name": "wrong unit", "actions": [{"treatment": treatment["code"], "dose": 1, "unit": other_unit}]}
    with live.client("sim") as c:
        doc = assert_problem(c.post(f"/v1/twins/{pid}/scenarios", json={"model": "tiny", "plans": [unknown]}), 422)
        assert doc["plan"]["plan"] == "mystery" and doc["plan"]["field"] == "actions[0].treatment"
        assert "unknown treatment 'unobtainium'" in doc["plan"]["reason"]
        assert f"({treatment['code']})" in doc["plan"]["reason"], "the known treatments are listed by name and code"
        doc = assert_problem(c.post(f"/v1/twins/{pid}/scenarios", json={"model": "tiny", "plans": [wrong_unit]}), 422)
        assert doc["plan"]["field"] == "actions[0].unit" and f"{other_unit!r}" in doc["plan"]["reason"]
        assert f"{treatment['unit']!r}" in doc["plan"]["reason"]
        doc = assert_problem(c.post(f"/v1/twins/{pid}/scenarios",
                                    json={"model": "tiny", "plans": [plans[0], plans[0]]}), 422)
        assert "unique" in doc["detail"]
        doc = assert_problem(c.post(f"/v1/twins/{pid}/scenarios", json={
            "model": "tiny", "plans": [{"name": "neg", "actions": [{"drug": "metformin", "dose": -5}]}]}), 422)
        assert any("dose" in e["field"] for e in doc["errors"])
        assert_problem(c.post(f"/v1/twins/{pid}/scenarios",
                              json={"model": "tiny", "plans": plans, "objective": "make it better"}), 422)


def test_plans_take_schedules_units_and_the_old_drug_key(live: LiveServer, pid: str, treatment: dict) -> None:
    name = treatment["name"] or treatment["code"]
    body = {"model": "tiny", "horizon_days": 60, "n_samples": 2, "plans": [
        {"name": "old key", "actions": [{"drug": name, "dose": 1000}]},
        {"name": "weekly", "actions": [{"treatment": treatment["code"], "dose": 1000, "unit": treatment["unit"],
                                        "every": 7, "times": 4}]},
        {"name": "twice", "actions": [{"treatment": name, "dose": 1000, "at": [0, 30]}]}]}
    with live.client("sim") as c:
        r = c.post(f"/v1/twins/{pid}/scenarios", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["plans"] == ["old key", "weekly", "twice"]
    action = httpx.get(f"{live.url}/openapi.json").json()["components"]["schemas"]["Action"]
    props = action["properties"]
    assert {"treatment", "dose", "unit", "frequency", "start", "stop", "every", "times", "at"} <= set(props)
    assert action["additionalProperties"] is False and action["required"] == ["treatment"]
    assert all(props[k].get("description") for k in ("treatment", "unit", "every", "times", "at"))
    assert props["every"]["anyOf"][0]["minimum"] == 1 and props["times"]["anyOf"][0]["maximum"] == 3650


def test_twin_404s_and_scopes(live: LiveServer, pid: str, plans: list[dict]) -> None:
    with live.client("sim") as c:
        assert "unknown-model" in assert_problem(
            c.post(f"/v1/twins/{pid}/forecast", json={"model": "nope"}), 404)["type"]
        assert_problem(c.post("/v1/twins/nobody/forecast", json={"model": "tiny"}), 404)
        assert_problem(c.post("/v1/twins/nobody/scenarios", json={"model": "tiny", "plans": plans}), 404)
    with live.client("reader") as c:
        assert_problem(c.post(f"/v1/twins/{pid}/forecast", json={"model": "tiny"}), 403)


def test_forecasts_are_audited(live: LiveServer, pid: str) -> None:
    lines = [json.loads(x) for x in Path(live.settings.audit_log).read_text().splitlines()]
    mine = [e for e in lines if e["patient_id"] == pid and e["action"] in ("twin.forecast", "twin.scenarios")]
    assert {e["action"] for e in mine} == {"twin.forecast", "twin.scenarios"}
    assert all(e["key_id"] == live.key_ids["sim"] or e["status"] in (403,) for e in mine)


def _wait_job(c, job_id: str, timeout_s: float = 120.0) -> dict:  # noqa: ANN001
    deadline = time.monotonic() + timeout_s
    while True:
        doc = c.get(f"/v1/jobs/{job_id}").json()
        if doc["status"] not in ("queued", "running") or time.monotonic() > deadline:
            return doc
        time.sleep(0.1)


def test_fewer_samples_than_members(live: LiveServer, pid: str, plans: list[dict]) -> None:
    """The tiny model has 2 members; one sample is a valid request (it used to crash)."""
    with live.client("sim") as c:
        r = c.post(f"/v1/twins/{pid}/scenarios", json={"model": "tiny", "plans": plans, "horizon_days": 60,
                                                       "n_samples": 1, "objective": "minimise HbA1c at 60d"})
        assert r.status_code == 200, r.text
        assert r.json()["n_samples"] == 1
        assert c.post(f"/v1/twins/{pid}/forecast", json={"model": "tiny", "n_samples": 1}).status_code == 200


def test_answers_report_their_cost(live: LiveServer, pid: str) -> None:
    with live.client("sim") as c:
        doc = c.post(f"/v1/twins/{pid}/forecast", json={"model": "tiny", "horizon_days": 70, "step_days": 7,
                                                        "n_samples": 4}).json()
    cost = doc["cost"]
    assert cost["kind"] == "forecast" and cost["trajectories"] == 4 * 2 and cost["solver_steps"] == 10
    assert 0 < cost["units"] <= cost["ceiling"] == live.settings.max_request_cost


def test_over_budget_requests_are_refused_with_the_cost_and_a_way_out(live: LiveServer, pid: str) -> None:
    """The issue's requests (3650 days x 512 samples at a 1-day step; 32 plans x 512 x 3650 d) ran for minutes."""
    big_forecast = {"model": "tiny", "horizon_days": 3650, "step_days": 1, "n_samples": 512}
    plans = [{"name": f"p{i}", "baseline": "none"} for i in range(32)]
    big_scenarios = {"model": "tiny", "plans": plans, "horizon_days": 3650, "n_samples": 512}
    with live.client("sim") as c:
        t = time.perf_counter()
        doc = assert_problem(c.post(f"/v1/twins/{pid}/forecast", json=big_forecast), 422)
        assert time.perf_counter() - t < 5
        assert "over-budget" in doc["type"] and doc["cost"]["units"] > doc["cost"]["ceiling"]
        assert f"{live.settings.max_request_cost:,}" in doc["detail"] and "/forecast/jobs" in doc["detail"]
        doc = assert_problem(c.post(f"/v1/twins/{pid}/scenarios", json=big_scenarios), 422)
        assert "over-budget" in doc["type"] and "/scenarios/jobs" in doc["detail"]
        # too big even for a job
        doc = assert_problem(c.post(f"/v1/twins/{pid}/forecast/jobs", json=big_forecast), 422)
        assert "max_job_cost" in doc["detail"]


def test_schema_and_behaviour_agree_on_types_and_ranges(live: LiveServer, pid: str) -> None:
    with live.client("sim") as c:
        for as_of in ("2400-01-01T00:00:00Z", 1_000_000_000, "12345"):
            doc = assert_problem(c.post(f"/v1/twins/{pid}/forecast", json={"model": "tiny", "as_of": as_of}), 422)
            assert doc["errors"][0]["field"] == "as_of"
        for dose in ("1000", True):
            plan = {"name": "x", "actions": [{"treatment": "metformin", "dose": dose}]}
            doc = assert_problem(c.post(f"/v1/twins/{pid}/scenarios", json={"model": "tiny", "plans": [plan]}), 422)
            assert "dose" in doc["errors"][0]["field"]
    schema = httpx.get(f"{live.url}/openapi.json").json()["components"]["schemas"]["ForecastRequest"]
    as_of = next(s for s in schema["properties"]["as_of"]["anyOf"] if s.get("type") == "string")
    assert as_of["pattern"].startswith("^(18|") and as_of["format"] == "date-time"


def test_scenario_job_reports_progress_and_its_result(live: LiveServer, pid: str, plans: list[dict]) -> None:
    body = {"model": "tiny", "plans": plans, "horizon_days": 180, "n_samples": 8}
    with live.client("sim") as c:
        r = c.post(f"/v1/twins/{pid}/scenarios/jobs", json=body)
        assert r.status_code == 202, r.text
        job = _wait_job(c, r.json()["id"])
        assert job["status"] == "succeeded" and job["kind"] == "scenarios" and job["progress"] == 1.0, job
        direct = c.post(f"/v1/twins/{pid}/scenarios", json=body).json()
        assert job["result"]["results"] == direct["results"]  # the same answer, seeded
        assert job["id"] in {j["id"] for j in c.get("/v1/jobs").json()["jobs"]}
        r = c.post(f"/v1/twins/{pid}/forecast/jobs", json={"model": "tiny", "horizon_days": 90, "n_samples": 4})
        assert r.status_code == 202, r.text
        job = _wait_job(c, r.json()["id"])
        assert job["status"] == "succeeded" and job["result"]["labs"], job


def test_a_running_job_can_be_cancelled(live: LiveServer, pid: str) -> None:
    """A job well above the synchronous ceiling stops at its next chunk once cancelled."""
    plans = [{"name": f"p{i}", "baseline": "none" if i % 2 else "current"} for i in range(32)]
    body = {"model": "tiny", "plans": plans, "horizon_days": 3650, "n_samples": 256}
    with live.client("sim") as c:
        r = c.post(f"/v1/twins/{pid}/scenarios/jobs", json=body)
        assert r.status_code == 202, r.text
        job_id = r.json()["id"]
        deadline = time.monotonic() + 60
        while c.get(f"/v1/jobs/{job_id}").json()["status"] == "queued" and time.monotonic() < deadline:
            time.sleep(0.05)
        r = c.delete(f"/v1/jobs/{job_id}")
        assert r.status_code in (200, 202), r.text
        t = time.perf_counter()
        job = _wait_job(c, job_id, 60)
        assert job["status"] == "cancelled" and job["error"] == "cancelled on request", job
        assert time.perf_counter() - t < 15
        assert c.delete(f"/v1/jobs/{job_id}").json()["status"] == "cancelled"  # idempotent


def test_work_stops_when_the_client_disconnects(live: LiveServer, pid: str) -> None:
    """A synchronous run near the ceiling, abandoned by its client after 0.3 s: the server stops
    it at the next checkpoint and records 499 (client closed) in the audit log."""
    plans = [{"name": f"p{i}", "baseline": "none"} for i in range(32)]
    body = {"model": "tiny", "plans": plans, "horizon_days": 3650, "n_samples": 20}
    with httpx.Client(base_url=live.url, headers={"Authorization": f"Bearer {live.tokens['sim']}"},
                      timeout=0.3) as c, pytest.raises(httpx.TimeoutException):
        c.post(f"/v1/twins/{pid}/scenarios", json=body)
    audit = Path(live.settings.audit_log)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        lines = [json.loads(x) for x in audit.read_text().splitlines()]
        if any(e["action"] == "twin.scenarios" and e["status"] == 499 for e in lines):
            break
        time.sleep(0.1)
    else:
        raise AssertionError("the abandoned request was not stopped (no 499 in the audit log)")
