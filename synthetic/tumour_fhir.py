"""FHIR R4 export of a tumour cohort's factual histories, shaped like a hospital export.

One transaction Bundle per patient (entries ``PUT <Type>/<id>``, ``fullUrl`` ``urn:uuid:<id>``,
references ``Patient/<id>``); ids are UUIDv5 of the cohort's generation arguments, the
patient index and the day, so output is identical for identical cohorts. Day ``t`` of the
simulator is the calendar day ``start + t`` (:func:`day_of` maps back):

* ``Patient``: gender and birth date (drawn from the cohort seed; the simulator has neither),
  ``deceasedDateTime`` on the day the tumour reached ``V_MAX``.
* ``Condition``: the patient type as a tumour subtype (:data:`TYPE_CODES`), onset on day 0. A
  biomarker the models may use, as CT uses the patient type as a static feature.
* ``Observation`` per defined volume ``V_t``: LOINC 21889-1 "Size Tumor" in cm3, day ``t`` at
  08:00 (before that day's treatment, which acts on ``V_{t+1}``).
* ``MedicationAdministration`` per chemo dose: carboplatin (RxNorm 40048) IV, 300 mg/m2 on day
  ``t`` at 10:00. One such dose is the simulator's concentration increment of 5.0.
* ``Procedure`` per radio fraction: SNOMED 1287742003 "Radiotherapy" on day ``t`` at 11:00,
  2 Gy (200 cGy) in the mCODE dose-delivered extension.

Volumes are written at full float precision so that records and arrays agree exactly.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from synthetic.drugs import RXNORM_SYSTEM
from synthetic.fhir_writer import SNOMED, UCUM
from synthetic.physiology import LOINC
from synthetic.tumour import TumourCohort

__all__ = [
    "CARBOPLATIN_MG_PER_M2",
    "MCODE_DOSE_EXTENSION",
    "RADIO_CGY",
    "START",
    "TUMOUR_SIZE_LOINC",
    "TYPE_CODES",
    "TYPE_SYSTEM",
    "day_of",
    "patient_bundle",
    "patient_ids",
    "write_bundles",
]

START = date(2020, 1, 1)
TUMOUR_SIZE_LOINC = "21889-1"
#: One carboplatin dose; the simulator's concentration unit 5.0 is one such dose.
CARBOPLATIN_MG_PER_M2 = 300.0
RADIO_CGY = 200.0
MCODE_DOSE_EXTENSION = "http://hl7.org/fhir/us/mcode/StructureDefinition/mcode-radiotherapy-dose-delivered-to-volume"
TYPE_SYSTEM = "urn:patient-twin:tumour-type"
TYPE_CODES = {1: ("type-1", "radio-sensitive subtype"), 2: ("type-2", "standard"),
              3: ("type-3", "chemo-sensitive subtype")}
_OBS_AT, _CHEMO_AT, _RADIO_AT = time(8), time(10), time(11)
_NS = uuid.UUID("0b5e6c2e-6f55-4d0f-8a43-5f2d6c1b7a31")


def patient_ids(cohort: TumourCohort) -> list[str]:
    """Stable FHIR Patient ids of the cohort's patients, by index."""
    key = f"tumour/{cohort.seed}/{cohort.gamma!r}/{cohort.n_patients}/{cohort.t_max}/{cohort.window}"
    return [str(uuid.uuid5(_NS, f"{key}/{i}")) for i in range(cohort.n_patients)]


def day_of(when: datetime, start: date = START) -> int:
    """Simulator day of a timestamp written by this module."""
    return (when.date() - start).days


def _when(start: date, day: int, at: time) -> str:
    return datetime.combine(start + timedelta(days=day), at, tzinfo=UTC).isoformat()


def _cc(system: str, code: str, display: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code, "display": display}], "text": display}


def _qty(value: float, unit: str) -> dict[str, Any]:
    return {"value": value, "unit": unit, "system": UCUM, "code": unit}


def patient_bundle(cohort: TumourCohort, index: int, pid: str, start: date = START) -> dict[str, Any]:
    """The transaction Bundle of patient ``index`` (FHIR id ``pid``)."""
    subject = {"reference": f"Patient/{pid}"}
    entries: list[dict[str, Any]] = []

    def add(rtype: str, key: str, body: dict[str, Any]) -> None:
        rid = str(uuid.uuid5(_NS, f"{pid}/{key}"))
        entries.append({"fullUrl": f"urn:uuid:{rid}", "resource": {"resourceType": rtype, "id": rid, **body},
                        "request": {"method": "PUT", "url": f"{rtype}/{rid}"}})

    rng = np.random.default_rng([cohort.seed, index])
    birth = start - timedelta(days=int(rng.integers(45 * 365, 85 * 365)))
    patient: dict[str, Any] = {"resourceType": "Patient", "id": pid,
                               "gender": "female" if rng.random() < 0.5 else "male", "birthDate": birth.isoformat()}
    length = int(cohort.lengths[index])
    if cohort.died[index]:
        patient["deceasedDateTime"] = _when(start, length, _OBS_AT)
    entries.append({"fullUrl": f"urn:uuid:{pid}", "resource": patient, "request": {"method": "PUT", "url": f"Patient/{pid}"}})

    code, display = TYPE_CODES[int(cohort.patient_type[index])]
    add("Condition", "type", {
        "clinicalStatus": _cc("http://terminology.hl7.org/CodeSystem/condition-clinical", "active", "Active"),
        "verificationStatus": _cc("http://terminology.hl7.org/CodeSystem/condition-ver-status", "confirmed", "Confirmed"),
        "code": _cc(TYPE_SYSTEM, code, display), "subject": subject, "onsetDateTime": _when(start, 0, _OBS_AT),
    })
    imaging = [_cc("http://terminology.hl7.org/CodeSystem/observation-category", "imaging", "Imaging")]
    for t in range(length + 1):
        add("Observation", f"volume/{t}", {
            "status": "final", "category": imaging, "code": _cc(LOINC, TUMOUR_SIZE_LOINC, "Size Tumor"),
            "subject": subject, "effectiveDateTime": _when(start, t, _OBS_AT),
            "valueQuantity": _qty(float(cohort.volumes[index, t]), "cm3"),
        })
    for day in np.flatnonzero(cohort.chemo[index, :length]).tolist():
        add("MedicationAdministration", f"chemo/{day}", {
            "status": "completed", "medicationCodeableConcept": _cc(RXNORM_SYSTEM, "40048", "carboplatin"),
            "subject": subject, "effectiveDateTime": _when(start, day, _CHEMO_AT),
            "dosage": {"route": _cc(SNOMED, "47625008", "Intravenous route"),
                       "dose": _qty(CARBOPLATIN_MG_PER_M2, "mg/m2")},
        })
    for day in np.flatnonzero(cohort.radio[index, :length]).tolist():
        add("Procedure", f"radio/{day}", {
            "status": "completed", "code": _cc(SNOMED, "1287742003", "Radiotherapy"), "subject": subject,
            "performedDateTime": _when(start, day, _RADIO_AT),
            "extension": [{"url": MCODE_DOSE_EXTENSION,
                           "extension": [{"url": "totalDoseDelivered", "valueQuantity": _qty(RADIO_CGY, "cGy")}]}],
        })
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def write_bundles(cohort: TumourCohort, out_dir: Path, start: date = START) -> list[Path]:
    """Write ``<patient id>.json`` for every patient of ``cohort``; paths in patient order."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, pid in enumerate(patient_ids(cohort)):
        path = out_dir / f"{pid}.json"
        path.write_text(json.dumps(patient_bundle(cohort, i, pid, start), separators=(",", ":")))
        paths.append(path)
    return paths
