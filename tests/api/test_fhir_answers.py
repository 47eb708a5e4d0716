"""``Accept: application/fhir+json`` on the forecast and scenario routes, over real HTTP: FHIR R4 Bundles
validated with ``fhir.resources``' R4B models, carrying the numbers of the JSON answers."""

from __future__ import annotations

import hashlib
import time
from datetime import datetime, timedelta

import pytest
from fhir.resources.R4B import get_fhir_model_class

from tests.api.conftest import Cohort, LiveServer
from tests.api.helpers import assert_problem

FHIR = {"Accept": "application/fhir+json"}
LOINC = "http://loinc.org"


@pytest.fixture(scope="module")
def pid(cohort: Cohort, trained_model: dict) -> str:
    assert trained_model["status"] == "succeeded", trained_model
    return cohort.patient_ids[1]


def resources(doc: dict) -> list[dict]:
    get_fhir_model_class("Bundle").model_validate(doc)
    for e in doc["entry"]:
        get_fhir_model_class(e["resource"]["resourceType"]).model_validate(e["resource"])
    return [e["resource"] for e in doc["entry"]]


def of(res: list[dict], kind: str) -> list[dict]:
    return [r for r in res if r["resourceType"] == kind]


def component(obs: dict, code: str) -> float:
    return next(c["valueQuantity"]["value"] for c in obs["component"] if c["code"]["coding"][0]["code"] == code)


def test_forecast_as_a_fhir_bundle(live: LiveServer, pid: str) -> None:
    body = {"model": "tiny", "horizon_days": 60, "step_days": 30, "n_samples": 6, "seed": 5}
    with live.client("sim") as c:
        plain = c.post(f"/v1/twins/{pid}/forecast", json=body).json()
        r = c.post(f"/v1/twins/{pid}/forecast", json=body, headers=FHIR)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/fhir+json")
    res = resources(r.json())
    origin = datetime.fromisoformat(plain["origin"].replace("Z", "+00:00"))
    obs = of(res, "Observation")
    assert len(obs) == len(plain["labs"]) * 3
    for o in obs:
        coding = o["code"]["coding"][0]
        lab = plain["labs"][coding["code"]]
        assert coding["system"] == LOINC and o["status"] == "preliminary"  # the synthetic records' LOINC codes
        assert o["valueQuantity"]["code"] == lab["unit"] and o["valueQuantity"]["system"] == "http://unitsofmeasure.org"
        i = [(origin + timedelta(days=d)).isoformat() for d in lab["days"]].index(o["effectiveDateTime"])
        assert o["valueQuantity"]["value"] == pytest.approx(lab["median"][i], rel=1e-5)
        assert component(o, "p05") == pytest.approx(lab["p05"][i], rel=1e-5)
        assert component(o, "p95") == pytest.approx(lab["p95"][i], rel=1e-5)
    risk = of(res, "RiskAssessment")  # one when the model has event hazards (the toy model's are tested in scenarios/)
    assert len(risk) == (1 if plain["event_risk"] else 0)
    for r_ in risk:
        assert [p["probabilityDecimal"] for p in r_["prediction"]] == pytest.approx(
            list(plain["event_risk"].values()), rel=1e-5, abs=1e-9)
    (prov,) = of(res, "Provenance")
    (device,) = of(res, "Device")
    sha = hashlib.sha256((live.settings.model_path / "tiny" / "model.pt").read_bytes()).hexdigest()
    assert {"type": {"text": "checkpoint sha256"}, "value": sha} in device["version"]
    assert {"url": "urn:patient-twin:extension:random-seed", "valueInteger": 5} in prov["extension"]
    refs = {e["what"].get("reference") for e in prov["entity"]}
    assert f"Patient/{pid}" in refs and any(x and x.startswith("Observation/") for x in refs)
    with live.client("reader") as c:
        timeline = c.get(f"/v1/patients/{pid}/timeline", params={"as_of": plain["origin"]}).json()
    # every record the forecast could read is named by the FHIR resource it came from
    events = {n["source"].removeprefix("fhir:") for n in timeline["nodes"]}
    assert events and all(n["source"].startswith("fhir:") for n in timeline["nodes"]) and events <= refs


def test_scenarios_as_fhir_care_plans(live: LiveServer, pid: str) -> None:
    with live.client("sim") as c:
        spec = next(m for m in c.get("/v1/models").json()["models"] if m["name"] == "tiny")["spec"]
        treatment = spec["treatments"][0]
        plans = [{"name": "no treatment", "baseline": "none"},
                 {"name": "treated", "baseline": "none",
                  "actions": [{"treatment": treatment["name"] or treatment["code"], "dose": 500, "frequency": "bid"}]}]
        body = {"model": "tiny", "plans": plans, "horizon_days": 90, "n_samples": 8, "seed": 2,
                "objective": "minimise HbA1c at 90d"}
        plain = c.post(f"/v1/twins/{pid}/scenarios", json=body).json()
        r = c.post(f"/v1/twins/{pid}/scenarios", json=body, headers=FHIR)
    assert r.status_code == 200, r.text
    res = resources(r.json())
    care = {p["title"]: p for p in of(res, "CarePlan")}
    assert set(care) == {"no treatment", "treated"}
    assert all(p["intent"] == "proposal" for p in care.values())
    detail = care["treated"]["activity"][0]["detail"]
    assert detail["code"]["coding"][0]["code"] == treatment["code"]
    assert detail["code"]["coding"][0]["system"] == "http://www.nlm.nih.gov/research/umls/rxnorm"
    by_url = {f"urn:uuid:{p['id']}": t for t, p in care.items()}
    rows = {row["plan"]: row for row in plain["results"]}
    treated = [o for o in of(res, "Observation") if by_url[o["basedOn"][0]["reference"]] == "treated"]
    assert treated
    for o in treated:
        lab = rows["treated"]["labs"][o["code"]["coding"][0]["code"]]
        day = next(d for d in lab["at_day"] if o["effectiveDateTime"].startswith(
            (datetime.fromisoformat(plain["origin"].replace("Z", "+00:00")) + timedelta(days=float(d))).date().isoformat()))
        v = lab["at_day"][day]
        assert o["valueQuantity"]["value"] == pytest.approx(v["median"], rel=1e-5)
        assert component(o, "diff-median") == pytest.approx(v["diff_vs_reference"]["median"], rel=1e-5, abs=1e-9)


def test_a_forecast_job_asked_for_fhir_holds_a_bundle(live: LiveServer, pid: str) -> None:
    body = {"model": "tiny", "horizon_days": 60, "step_days": 30, "n_samples": 4, "seed": 1}
    with live.client("sim") as c:
        job = c.post(f"/v1/twins/{pid}/forecast/jobs", json=body, headers=FHIR).json()
        deadline = time.monotonic() + 120
        while job["status"] in ("queued", "running") and time.monotonic() < deadline:
            time.sleep(0.1)
            job = c.get(f"/v1/jobs/{job['id']}").json()
        plain = c.post(f"/v1/twins/{pid}/forecast", json=body).json()
    assert job["status"] == "succeeded", job
    obs = of(resources(job["result"]), "Observation")
    assert len(obs) == len(plain["labs"]) * 3
    first = next(o for o in obs if o["effectiveDateTime"].startswith(plain["origin"][:10]))
    assert first["valueQuantity"]["value"] == pytest.approx(plain["labs"][first["code"]["coding"][0]["code"]]["median"][0],
                                                            rel=1e-5)


def test_errors_stay_problem_json(live: LiveServer, pid: str) -> None:
    with live.client("sim") as c:
        r = c.post(f"/v1/twins/{pid}/forecast", json={"model": "nope"}, headers=FHIR)
    assert_problem(r, 404)
