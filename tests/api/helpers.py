"""Shared helpers of the API tests (kept apart from conftest so test modules can import them)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

FHIR_JSON = {"Content-Type": "application/fhir+json"}
PROBLEM = "application/problem+json"


def patient_id_of(bundle: dict[str, Any]) -> str:
    """The id of the (single) Patient resource in a bundle."""
    for e in bundle["entry"]:
        if e["resource"]["resourceType"] == "Patient":
            return e["resource"]["id"]
    raise AssertionError("bundle has no Patient")


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def assert_problem(r: httpx.Response, status: int) -> dict[str, Any]:
    """The response is an RFC 9457 problem with ``status``; returns its document."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM), r.headers["content-type"]
    doc = r.json()
    assert doc["status"] == status
    assert doc["title"] and doc["detail"]
    return doc


def tiny_bundle(pid: str, *, n_obs: int = 2, bad_obs: int | None = None) -> dict[str, Any]:
    """A small valid collection bundle for patient ``pid``; ``bad_obs`` corrupts that observation's value."""
    entries: list[dict[str, Any]] = [
        {"resource": {"resourceType": "Patient", "id": pid, "gender": "female", "birthDate": "1960-04-02"}}
    ]
    for i in range(n_obs):
        value: Any = 90.0 + i
        if bad_obs == i:
            value = "not-a-number"
        entries.append(
            {
                "resource": {
                    "resourceType": "Observation",
                    "id": f"{pid}-obs-{i}",
                    "status": "final",
                    "code": {"coding": [{"system": "http://loinc.org", "code": "2339-0", "display": "Glucose"}]},
                    "subject": {"reference": f"Patient/{pid}"},
                    "effectiveDateTime": f"2020-01-{i % 28 + 1:02d}T08:00:00Z",
                    "valueQuantity": {"value": value, "unit": "mg/dL", "system": "http://unitsofmeasure.org",
                                      "code": "mg/dL"},
                }
            }
        )
    return {"resourceType": "Bundle", "type": "collection", "entry": entries}
