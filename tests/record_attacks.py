"""The record-integrity attacks of issue 16, as data shared by the HTTP and the CLI tests.

Each :class:`Attack` has records that are stored first (``setup``: bundles that must be
accepted), then the hostile or incomplete upload (``attack``: a FHIR Bundle, or one bare
resource for the CLI), the answer it must get (409 for a conflict with another patient's
records, 422 for an incomplete record or an unknown patient) and the resource and field the
answer must name. After the attack every patient of the setup must read back exactly as
before, and no patient of the attack may exist.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def patient(pid: str) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": pid, "gender": "female", "birthDate": "1960-04-02"}


def glucose(oid: str, pid: str, value: float = 90.0, when: str = "2020-01-01T08:00:00Z",
            encounter: str | None = None) -> dict[str, Any]:
    r: dict[str, Any] = {
        "resourceType": "Observation", "id": oid, "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "2339-0", "display": "Glucose"}]},
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": when,
        "valueQuantity": {"value": value, "unit": "mg/dL", "system": UCUM, "code": "mg/dL"},
    }
    if encounter:
        r["encounter"] = {"reference": f"Encounter/{encounter}"}
    return r


def encounter(eid: str, pid: str) -> dict[str, Any]:
    return {"resourceType": "Encounter", "id": eid, "status": "finished", "class": {"code": "AMB"},
            "subject": {"reference": f"Patient/{pid}"},
            "period": {"start": "2020-01-01T07:00:00Z", "end": "2020-01-01T09:00:00Z"}}


def condition(cid: str, pid: str | None) -> dict[str, Any]:
    r: dict[str, Any] = {"resourceType": "Condition", "id": cid,
                         "code": {"coding": [{"system": "http://snomed.info/sct", "code": "44054006"}]},
                         "onsetDateTime": "2019-05-01"}
    if pid is not None:
        r["subject"] = {"reference": f"Patient/{pid}"}
    return r


def bundle(*resources: dict[str, Any] | None) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in resources]}


@dataclass
class Attack:
    """One attack: ``setup`` bundles are stored first, then ``attack`` must be refused."""

    name: str
    status: int
    resource: str
    field: str | None
    attack: dict[str, Any]
    setup: list[dict[str, Any]] = field(default_factory=list)
    victims: list[str] = field(default_factory=list)  # patients whose records must not change
    absent: list[str] = field(default_factory=list)  # patients that must not exist afterwards
    reason: str | None = None  # a word the message must contain


def _cross_patient_observation() -> Attack:
    a, b = uid("own-a"), uid("own-b")
    oid = f"{a}-glucose"
    stolen = glucose(oid, b, value=250.0, when="2021-06-01T08:00:00Z")
    return Attack("cross-patient-observation", 409, f"Observation/{oid}", None,
                  attack=bundle(patient(b), stolen), setup=[bundle(patient(a), glucose(oid, a))],
                  victims=[a], absent=[b], reason="another patient")


def _cross_patient_observation_existing_owner() -> Attack:
    a, b = uid("own-a"), uid("own-b")
    oid = f"{a}-glucose"
    return Attack("cross-patient-observation-to-existing-patient", 409, f"Observation/{oid}", None,
                  attack=bundle(glucose(oid, b, value=250.0, when="2021-06-01T08:00:00Z")),
                  setup=[bundle(patient(a), glucose(oid, a)), bundle(patient(b))],
                  victims=[a, b], reason="another patient")


def _cross_patient_reference() -> Attack:
    a, b = uid("ref-a"), uid("ref-b")
    enc = f"{a}-visit"
    return Attack("cross-patient-encounter-reference", 409, f"Observation/{b}-glucose", None,
                  attack=bundle(patient(b), glucose(f"{b}-glucose", b, encounter=enc)),
                  setup=[bundle(patient(a), encounter(enc, a), glucose(f"{a}-glucose", a, encounter=enc))],
                  victims=[a], absent=[b], reason="another patient")


def _empty_code() -> Attack:
    a = uid("code")
    oid = f"{a}-glucose"
    blank = glucose(oid, a)
    blank["code"] = {}
    return Attack("observation-empty-code", 422, f"Observation/{oid}", "code",
                  attack=bundle(patient(a), blank), setup=[bundle(patient(a), glucose(oid, a))], victims=[a])


def _unknown_subject() -> Attack:
    ghost = uid("does-not-exist")
    return Attack("observation-unknown-patient", 422, f"Observation/{ghost}-glucose", "subject",
                  attack=bundle(glucose(f"{ghost}-glucose", ghost)), absent=[ghost], reason=ghost)


def _null_resource() -> Attack:
    a = uid("null")
    return Attack("entry-resource-null", 422, "entry 2", "resource",
                  attack=bundle(patient(a), None), absent=[a])


def _condition_without_subject() -> Attack:
    a = uid("cond")
    return Attack("condition-without-subject", 422, f"Condition/{a}-dm", "subject",
                  attack=bundle(patient(a), condition(f"{a}-dm", None)), absent=[a])


def _observation_without_subject() -> Attack:
    a = uid("nosubj")
    obs = glucose(f"{a}-glucose", a)
    del obs["subject"]
    return Attack("observation-without-subject", 422, f"Observation/{a}-glucose", "subject",
                  attack=bundle(patient(a), obs), absent=[a])


def _patient_without_id() -> Attack:
    p = patient("x")
    del p["id"]
    return Attack("patient-without-id", 422, "entry 1", "id", attack=bundle(p))


def _negative_hba1c() -> Attack:
    a = uid("a1c")
    obs = {"resourceType": "Observation", "id": f"{a}-a1c", "status": "final",
           "code": {"coding": [{"system": LOINC, "code": "4548-4", "display": "Hemoglobin A1c"}]},
           "subject": {"reference": f"Patient/{a}"}, "effectiveDateTime": "2020-01-01",
           "valueQuantity": {"value": -5, "unit": "%", "system": UCUM, "code": "%"}}
    return Attack("hba1c-negative", 422, f"Observation/{a}-a1c", "valueQuantity.value",
                  attack=bundle(patient(a), obs), absent=[a], reason="impossible")


ATTACKS: dict[str, Callable[[], Attack]] = {
    f().name: f
    for f in (_cross_patient_observation, _cross_patient_observation_existing_owner, _cross_patient_reference,
              _empty_code, _unknown_subject, _null_resource, _condition_without_subject,
              _observation_without_subject, _patient_without_id, _negative_hba1c)
}


def fresh(name: str) -> Attack:
    """A new instance of attack ``name`` (new patient ids, so every run starts clean)."""
    return copy.deepcopy(ATTACKS[name]())
