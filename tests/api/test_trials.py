"""``POST /v1/trials`` over real HTTP: a job with progress whose result summarises every patient
matching the cohort predicate under each plan; cost refused up front; auth and bad input."""

from __future__ import annotations

import base64
import time

import httpx

from tests.api.conftest import Cohort, LiveServer
from tests.api.helpers import assert_problem

HBA1C_MEASURED = {"lab": "4548-4", "op": ">", "value": 0}
ARMS = [{"name": "no treatment"}, {"name": "continue current therapy", "baseline": "current"}]


def _wait(c: httpx.Client, job_id: str, timeout_s: float = 240.0) -> tuple[dict, list[float]]:
    deadline = time.monotonic() + timeout_s
    seen = []
    while True:
        doc = c.get(f"/v1/jobs/{job_id}").json()
        seen.append(doc["progress"])
        if doc["status"] in ("succeeded", "failed") or time.monotonic() > deadline:
            return doc, seen
        time.sleep(0.1)


def test_trial_job_summarises_the_cohort(live: LiveServer, cohort: Cohort, trained_model: dict) -> None:
    with live.client("admin") as c:
        matching = c.post("/v1/query", json={"predicate": HBA1C_MEASURED}).json()["patient_ids"]
    assert matching
    body = {"cohort": HBA1C_MEASURED, "plans": ARMS, "model": trained_model["name"], "days": [30, 90],
            "n_samples": 8, "per_patient": True, "better": {"4548-4": "lower"}, "plot": True}
    with live.client("sim") as c:
        r = c.post("/v1/trials", json=body)
        assert r.status_code == 202, r.text
        job, seen = _wait(c, r.json()["id"])
    assert job["kind"] == "trial" and job["status"] == "succeeded", job
    assert seen == sorted(seen) and job["progress"] == 1.0
    res = job["result"]
    assert res["cohort_size"] == len(matching) and res["simulated"] + res["excluded"] == len(matching)
    assert res["plans"] == ["no treatment", "continue current therapy"] and res["reference"] == "no treatment"
    assert set(res["arms"]) == set(res["plans"]) and set(res["effects"]) == {"continue current therapy"}
    e = res["effects"]["continue current therapy"]["4548-4"]["90"]
    assert e["low"] <= e["mean"] <= e["high"] and 0.0 <= e["share_benefit"] <= 1.0 and e["better"] == "lower"
    a = res["arms"]["no treatment"]["4548-4"]["30"]
    assert a["low"] <= a["median"] <= a["high"]
    assert res["guardrails"] == {"no treatment": 0, "continue current therapy": 0}
    assert res["cost"]["units"] > 0 and res["samples"] == 8
    assert len(res["patients"]) == res["simulated"] and {p["patient_id"] for p in res["patients"]} <= set(matching)
    assert all(0.0 <= p["effects"]["continue current therapy"]["4548-4"]["90"]["p_better"] <= 1.0
               for p in res["patients"])
    assert base64.b64decode(res.pop("plot_png")).startswith(b"\x89PNG")
    # no server path in the job
    assert str(live.settings.store).removeprefix("sqlite:///") not in str(job)
    assert str(live.settings.model_path) not in str(job)


def test_trial_refusals(live: LiveServer, trained_model: dict) -> None:
    big = {"cohort": HBA1C_MEASURED, "plans": ARMS * 4, "model": trained_model["name"], "days": [3650],
           "n_samples": 512}
    big["plans"] = [{**p, "name": f"{p['name']} {i}"} for i, p in enumerate(big["plans"])]
    with live.client("sim") as c:
        doc = assert_problem(c.post("/v1/trials", json=big), 422)
        assert "max_job_cost" in doc["detail"] and "narrower cohort" in doc["detail"]
        assert doc["cost"]["units"] > doc["cost"]["ceiling"]
        doc = assert_problem(c.post("/v1/trials", json={"cohort": HBA1C_MEASURED, "plans": ARMS[:1]}), 422)
        assert "plans" in str(doc)
        doc = assert_problem(c.post("/v1/trials", json={"cohort": {"has_condition": "0000"}, "plans": ARMS,
                                                        "model": trained_model["name"]}), 422)
        assert "no patient matches" in doc["detail"]
        assert_problem(c.post("/v1/trials", json={"cohort": HBA1C_MEASURED, "plans": ARMS, "model": "nope"}), 404)
    with live.client(None) as c:
        assert_problem(c.post("/v1/trials", json={"cohort": HBA1C_MEASURED, "plans": ARMS}), 401)
    with live.client("reader") as c:
        assert_problem(c.post("/v1/trials", json={"cohort": HBA1C_MEASURED, "plans": ARMS}), 403)
