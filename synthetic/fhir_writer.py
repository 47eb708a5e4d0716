"""FHIR R4 emission: one Synthea-shaped transaction Bundle per synthetic patient.

Shape (documented in ``docs/synthetic.md``): every entry has ``fullUrl`` ``urn:uuid:<id>`` and
``request`` ``POST <type>``; references between resources use those ``urn:uuid`` URLs. Ids are
UUIDv5 of (cohort seed, patient index, resource kind, counter), so output is byte-identical
for a given seed.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from synthetic.drugs import RXNORM_SYSTEM, drug_by_code
from synthetic.genotype import HGNC_SYSTEM, HGVS_SYSTEM, VARIANTS
from synthetic.images import IMAGE_SIZE
from synthetic.physiology import LABS, LOINC
from synthetic.records import CONDITIONS, PROCEDURES, PatientRecord

__all__ = ["PatientContext", "patient_bundle", "patient_uuid"]

SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"
DCM = "http://dicom.nema.org/resources/ontology/DCM"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
#: DICOM Ultrasound Image Storage SOP class (single frame).
_US_SOP_CLASS = "urn:oid:1.2.840.10008.5.1.4.1.1.6.1"
_NS = uuid.UUID("6f1c1e0a-52d4-4a43-9b1e-2f0c7a1d9e55")
_VITALS = {"sbp", "dbp"}
_ENCOUNTER_TYPE = {
    "AMB": ("185349003", "Encounter for check up (procedure)", "ambulatory"),
    "IMP": ("32485007", "Hospital admission (procedure)", "inpatient encounter"),
}


def patient_uuid(seed: int, index: int) -> str:
    """Stable patient id for patient ``index`` of the cohort with ``seed``."""
    return str(uuid.uuid5(_NS, f"synth/{seed}/{index}"))


class PatientContext:
    """Per-patient constants the writer needs besides the record."""

    def __init__(self, *, pid: str, seed: int, start: datetime, birth_date: str, female: bool,
                 genotype: dict[str, int], has_genomics: bool, image_urls: list[str]) -> None:
        self.pid, self.seed, self.start, self.birth_date, self.female = pid, seed, start, birth_date, female
        self.genotype, self.has_genomics, self.image_urls = genotype, has_genomics, image_urls
        self._n = 0

    def uid(self, kind: str) -> str:
        self._n += 1
        return str(uuid.uuid5(_NS, f"{self.pid}/{kind}/{self._n}"))

    def when(self, day: float, minutes: int = 0) -> str:
        return (self.start + timedelta(days=day, minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%S+00:00")


def _cc(system: str, code: str, display: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code, "display": display}], "text": display}


def _qty(key: str, value: float) -> dict[str, Any]:
    unit = LABS[key].unit
    return {"value": value, "unit": unit, "system": UCUM, "code": unit}


def _ref(uid: str) -> dict[str, str]:
    return {"reference": f"urn:uuid:{uid}"}


def _entry(res: dict[str, Any]) -> dict[str, Any]:
    return {"fullUrl": f"urn:uuid:{res['id']}", "resource": res,
            "request": {"method": "POST", "url": res["resourceType"]}}


def patient_bundle(ctx: PatientContext, rec: PatientRecord) -> dict[str, Any]:
    """The transaction Bundle of one patient."""
    entries: list[dict[str, Any]] = []
    pid = ctx.pid
    subj = _ref(pid)
    patient: dict[str, Any] = {
        "resourceType": "Patient", "id": pid,
        "identifier": [{"system": "urn:patient-twin:synthetic", "value": pid}],
        "gender": "female" if ctx.female else "male", "birthDate": ctx.birth_date,
    }
    if rec.death_day is not None:
        patient["deceasedDateTime"] = ctx.when(rec.death_day, 12 * 60)
    entries.append(_entry(patient))

    enc_ids: list[str] = []
    enc_start: list[str] = []
    cond_ids: dict[int, str] = {id(c): ctx.uid("Condition") for c in rec.conditions}
    cause_cond = {c["visit"]: cond_ids[id(c)] for c in rec.conditions if c["key"] in ("mi", "stroke", "heart_failure")}
    for v, visit in enumerate(rec.visits):
        uid = ctx.uid("Encounter")
        start = ctx.when(visit["day"], 9 * 60 + (v * 37) % 480)
        if visit["kind"] == "AMB":
            end = ctx.when(visit["day"], 9 * 60 + (v * 37) % 480 + 30)
        else:
            end = ctx.when(visit["end_day"], 11 * 60)
        code, display, cls_display = _ENCOUNTER_TYPE[visit["kind"]]
        enc: dict[str, Any] = {
            "resourceType": "Encounter", "id": uid, "status": "finished",
            "class": {"system": ACT_CODE, "code": visit["kind"], "display": cls_display},
            "type": [_cc(SNOMED, code, display)], "subject": subj, "period": {"start": start, "end": end},
        }
        if v in cause_cond:
            enc["reasonReference"] = [_ref(cause_cond[v])]
        entries.append(_entry(enc))
        enc_ids.append(uid)
        enc_start.append(start)

    # vitals (one BP panel per visit) and labs
    by_visit: dict[int, dict[str, float]] = {}
    for o in rec.observations:
        by_visit.setdefault(o["visit"], {})[o["key"]] = o["value"]
    for v, vals in by_visit.items():
        base = {"status": "final", "subject": subj, "encounter": _ref(enc_ids[v]), "effectiveDateTime": enc_start[v],
                "issued": enc_start[v]}
        if "sbp" in vals:
            entries.append(_entry({
                "resourceType": "Observation", "id": ctx.uid("Observation"),
                "category": [{"coding": [{"system": OBS_CATEGORY, "code": "vital-signs", "display": "vital-signs"}]}],
                "code": _cc(LOINC, "85354-9", "Blood pressure panel with all children optional"), **base,
                "component": [{"code": _cc(LOINC, LABS[k].code, LABS[k].display), "valueQuantity": _qty(k, vals[k])}
                              for k in ("sbp", "dbp") if k in vals],
            }))
        for key, val in vals.items():
            if key in _VITALS:
                continue
            spec = LABS[key]
            entries.append(_entry({
                "resourceType": "Observation", "id": ctx.uid("Observation"),
                "category": [{"coding": [{"system": OBS_CATEGORY, "code": "laboratory", "display": "laboratory"}]}],
                "code": _cc(LOINC, spec.code, spec.display), **base, "valueQuantity": _qty(key, val),
            }))

    # genomics: one HL7 genomics-reporting variant Observation per carried variant
    if ctx.has_genomics and rec.visits:
        for var in VARIANTS:
            count = ctx.genotype.get(var.key, 0)
            if count == 0:
                continue
            zyg = ("LA6706-1", "Heterozygous") if count == 1 else ("LA6705-3", "Homozygous")
            entries.append(_entry({
                "resourceType": "Observation", "id": ctx.uid("Observation"),
                "meta": {"profile": ["http://hl7.org/fhir/uv/genomics-reporting/StructureDefinition/variant"]},
                "status": "final",
                "category": [{"coding": [{"system": OBS_CATEGORY, "code": "laboratory", "display": "laboratory"}]}],
                "code": _cc(LOINC, "69548-6", "Genetic variant assessment"),
                "subject": subj, "encounter": _ref(enc_ids[0]),
                "effectiveDateTime": enc_start[0], "issued": enc_start[0],
                "valueCodeableConcept": _cc(LOINC, "LA9633-4", "Present"),
                "component": [
                    {"code": _cc(LOINC, "48018-6", "Gene studied [ID]"),
                     "valueCodeableConcept": {
                         "coding": [{"system": HGNC_SYSTEM, "code": var.hgnc_id, "display": var.gene}],
                         "text": var.gene}},
                    {"code": _cc(LOINC, "81290-9", "Genomic DNA change (gHGVS)"),
                     "valueCodeableConcept": {
                         "coding": [{"system": HGVS_SYSTEM, "code": var.hgvs, "display": var.hgvs}],
                         "text": f"{var.hgvs} ({var.rsid})"}},
                    {"code": _cc(LOINC, "81255-2", "dbSNP [ID]"),
                     "valueCodeableConcept": {"coding": [{"system": "http://www.ncbi.nlm.nih.gov/projects/SNP",
                                                          "code": var.rsid, "display": var.rsid}]}},
                    {"code": _cc(LOINC, "53034-5", "Allelic state"), "valueCodeableConcept": _cc(LOINC, *zyg)},
                ],
            }))

    # conditions
    for c in rec.conditions:
        code, display = CONDITIONS[c["key"]]
        active = c["abatement_day"] is None
        cond: dict[str, Any] = {
            "resourceType": "Condition", "id": cond_ids[id(c)],
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                           "code": "active" if active else "resolved"}]},
            "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                                               "code": "confirmed"}]},
            "code": _cc(SNOMED, code, display), "subject": subj, "encounter": _ref(enc_ids[c["visit"]]),
            "onsetDateTime": enc_start[c["visit"]], "recordedDate": enc_start[c["visit"]],
        }
        if not active:
            cond["abatementDateTime"] = ctx.when(c["abatement_day"], 9 * 60)
        entries.append(_entry(cond))

    # medications: one MedicationRequest per constant-dose segment
    for seg in rec.segments:
        drug = drug_by_code(seg["drug"])
        v = seg["visit"]
        authored = enc_start[v]
        period: dict[str, str] = {"start": authored}
        if seg["stop_day"] is not None:
            period["end"] = ctx.when(seg["stop_day"], 9 * 60)
        dose = seg["dose"]
        med: dict[str, Any] = {
            "resourceType": "MedicationRequest", "id": ctx.uid("MedicationRequest"),
            "status": "active" if seg["stop_day"] is None else "stopped", "intent": "order",
            "medicationCodeableConcept": _cc(RXNORM_SYSTEM, drug.code, drug.display),
            "subject": subj, "encounter": _ref(enc_ids[v]), "authoredOn": authored,
        }
        reason = next((cond_ids[id(c)] for c in rec.conditions
                       if c["key"] == seg["reason"] and c["onset_day"] <= seg["start_day"]), None)
        if reason is not None:
            med["reasonReference"] = [_ref(reason)]
        med["dosageInstruction"] = [{
            "sequence": 1, "text": f"{dose:g} mg once daily",
            "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}},
            "route": _cc(SNOMED, "26643006", "Oral route"),
            "doseAndRate": [{"doseQuantity": {"value": dose, "unit": "mg", "system": UCUM, "code": "mg"}}],
        }]
        med["dispenseRequest"] = {"validityPeriod": period}
        entries.append(_entry(med))

    # procedures
    for pr in rec.procedures:
        code, display = PROCEDURES[pr["key"]]
        v = pr["visit"]
        entries.append(_entry({
            "resourceType": "Procedure", "id": ctx.uid("Procedure"), "status": "completed",
            "code": _cc(SNOMED, code, display), "subject": subj, "encounter": _ref(enc_ids[v]),
            "performedPeriod": {"start": enc_start[v], "end": ctx.when(pr["day"], 9 * 60 + (v * 37) % 480 + 60)},
        }))

    # imaging: ImagingStudy + Media pointing at the .npy array
    modality = {"system": DCM, "code": "US", "display": "Ultrasound"}
    body_site = {"system": SNOMED, "code": "64033007", "display": "Kidney structure"}
    for k, (img, url) in enumerate(zip(rec.images, ctx.image_urls, strict=True)):
        v = img["visit"]
        study_id = ctx.uid("ImagingStudy")
        study_uid = f"2.25.{uuid.UUID(study_id).int}"
        entries.append(_entry({
            "resourceType": "ImagingStudy", "id": study_id,
            "identifier": [{"use": "official", "system": "urn:ietf:rfc:3986", "value": f"urn:oid:{study_uid}"}],
            "status": "available", "subject": subj, "encounter": _ref(enc_ids[v]), "started": enc_start[v],
            "modality": [modality], "numberOfSeries": 1, "numberOfInstances": 1,
            "series": [{
                "uid": f"{study_uid}.1", "number": 1, "modality": modality, "bodySite": body_site,
                "numberOfInstances": 1, "started": enc_start[v],
                "instance": [{"uid": f"{study_uid}.1.1", "number": 1,
                              "sopClass": {"system": "urn:ietf:rfc:3986", "code": _US_SOP_CLASS}}],
            }],
        }))
        entries.append(_entry({
            "resourceType": "Media", "id": ctx.uid("Media"), "status": "completed",
            "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/media-type", "code": "image",
                                 "display": "Image"}]},
            "modality": _cc(DCM, "US", "Ultrasound"), "partOf": [_ref(study_id)], "subject": subj,
            "encounter": _ref(enc_ids[v]), "createdDateTime": enc_start[v],
            "bodySite": _cc(SNOMED, "64033007", "Kidney structure"),
            "width": IMAGE_SIZE, "height": IMAGE_SIZE,
            "content": {"contentType": "application/x-npy", "url": url, "title": f"renal ultrasound {k + 1}"},
        }))
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}

