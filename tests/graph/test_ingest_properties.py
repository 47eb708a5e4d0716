"""Property tests: valid resources round-trip into nodes; junk only ever raises RecordError."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.errors import RecordError
from graph.ingest import parse_bundle, parse_fhir_resources, parse_file
from graph.schema import NodeType
from graph.store.sqlite import SQLiteStore
from graph.units import CANONICAL

LOINC, SCT = "http://loinc.org", "http://snomed.info/sct"
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

ids = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9\-.]{0,30}", fullmatch=True)
times = st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2100, 1, 1)).map(
    lambda d: d.replace(microsecond=0, tzinfo=UTC))
lab_codes = st.sampled_from(sorted(c for c, lu in CANONICAL.items() if lu.unit not in ("Cel",)))
snomed = st.from_regex(r"[1-9][0-9]{5,15}", fullmatch=True)


@st.composite
def observation(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any]]:
    code = draw(lab_codes)
    lu = CANONICAL[code]
    hi = lu.high if lu.high is not None else 1e6
    value = draw(st.floats(min_value=lu.low or 0.0, max_value=hi, allow_nan=False, allow_infinity=False))
    when = draw(times)
    pid, oid = draw(ids), draw(ids)
    patient = {"resourceType": "Patient", "id": pid, "gender": draw(st.sampled_from(["male", "female", "other"])),
               "birthDate": draw(times).date().isoformat()}
    obs = {"resourceType": "Observation", "id": oid, "status": "final", "subject": {"reference": f"Patient/{pid}"},
           "effectiveDateTime": when.isoformat(), "code": {"coding": [{"system": LOINC, "code": code}]},
           "valueQuantity": {"value": value, "unit": lu.unit, "system": "http://unitsofmeasure.org", "code": lu.unit}}
    return patient, obs


@given(observation())
@FAST
def test_valid_observations_round_trip(pair: tuple[dict[str, Any], dict[str, Any]]) -> None:
    patient, obs = pair
    pf = parse_fhir_resources([patient, obs], source_name="gen.json")
    nodes = {n.id: n for n in pf.batch.nodes}
    lab = nodes[f"Observation/{obs['id']}"]
    assert lab.type is NodeType.LAB and lab.patient_id == patient["id"]
    assert lab.code == obs["code"]["coding"][0]["code"] and lab.system == LOINC
    assert lab.value == pytest.approx(obs["valueQuantity"]["value"])
    assert lab.unit == CANONICAL[lab.code].unit
    assert lab.time == datetime.fromisoformat(obs["effectiveDateTime"])
    p = nodes[f"Patient/{patient['id']}"]
    assert p.props["sex"] == patient["gender"] and p.props["birth_date"] == patient["birthDate"]
    with SQLiteStore(":memory:") as store:  # and through the store
        store.write(pf.batch)
        back = store.get_nodes([lab.id])[0]
        assert (back.value, back.unit, back.code, back.time) == (lab.value, lab.unit, lab.code, lab.time)


@given(pid=ids, cid=ids, code=snomed, onset=times, abatement=st.none() | times,
       status=st.sampled_from(["active", "resolved", "remission"]))
@FAST
def test_valid_conditions_round_trip(pid: str, cid: str, code: str, onset: datetime, abatement: datetime | None,
                                     status: str) -> None:
    cond = {"resourceType": "Condition", "id": cid, "subject": {"reference": f"Patient/{pid}"},
            "clinicalStatus": {"coding": [{"code": status}]}, "code": {"coding": [{"system": SCT, "code": code}]},
            "onsetDateTime": onset.isoformat()}
    if abatement is not None:
        cond["abatementDateTime"] = abatement.isoformat()
    pf = parse_fhir_resources([cond], source_name="c.json")
    node = next(n for n in pf.batch.nodes if n.type is NodeType.CONDITION)
    assert (node.id, node.patient_id, node.code, node.system) == (f"Condition/{cid}", pid, code, SCT)
    assert node.time == onset and node.end == abatement
    assert node.props["clinical_status"] == status
    assert any(e.dst == f"Concept/{SCT}|{code}" for e in pf.batch.edges)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=12), kids, max_size=4),
    max_leaves=20,
)
RESOURCE_TYPES = ["Patient", "Encounter", "Observation", "Condition", "MedicationRequest", "MedicationStatement",
                  "MedicationAdministration", "Procedure", "ImagingStudy", "Media", "DiagnosticReport",
                  "MolecularSequence", "Claim"]
FIELDS = ["id", "subject", "patient", "status", "code", "valueQuantity", "component", "effectiveDateTime", "issued",
          "onsetDateTime", "abatementDateTime", "birthDate", "gender", "deceasedDateTime", "period", "class", "type",
          "medicationCodeableConcept", "medicationReference", "dosageInstruction", "dosage", "reasonReference",
          "contained", "series", "partOf", "content", "media", "variant", "extension", "referenceRange",
          "valueInteger", "valueCodeableConcept", "performedPeriod", "started", "encounter", "verificationStatus"]


@st.composite
def junk_resource(draw: st.DrawFn) -> dict[str, Any]:
    r: dict[str, Any] = {"resourceType": draw(st.sampled_from(RESOURCE_TYPES))}
    for f in draw(st.lists(st.sampled_from(FIELDS), max_size=8, unique=True)):
        r[f] = draw(json_values)
    if draw(st.booleans()):
        r["subject"] = {"reference": "Patient/p"}
    return r


def _only_record_errors(fn: Any) -> None:
    try:
        fn()
    except RecordError:
        pass


@given(st.lists(junk_resource() | json_values, max_size=5))
@settings(max_examples=300, deadline=None)
def test_junk_resources_raise_only_record_error(resources: list[Any]) -> None:
    _only_record_errors(lambda: parse_fhir_resources(resources, source_name="junk.json"))
    _only_record_errors(lambda: parse_bundle({"resourceType": "Bundle", "entry": [{"resource": r} for r in resources]},
                                             source_name="junk.json"))


def _paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _paths(v, (*prefix, i))
    return out


TEMPLATES = [
    {"resourceType": "Observation", "id": "o", "status": "final", "subject": {"reference": "Patient/p"},
     "effectiveDateTime": "2020-01-01T00:00:00Z", "code": {"coding": [{"system": LOINC, "code": "85354-9"}]},
     "component": [{"code": {"coding": [{"system": LOINC, "code": "8480-6"}]},
                    "valueQuantity": {"value": 120, "unit": "mm[Hg]", "code": "mm[Hg]"},
                    "referenceRange": [{"low": {"value": 90, "unit": "mm[Hg]"}}]}]},
    {"resourceType": "MedicationRequest", "id": "m", "status": "active", "subject": {"reference": "Patient/p"},
     "authoredOn": "2020-01-01", "medicationReference": {"reference": "#x"},
     "contained": [{"resourceType": "Medication", "id": "x", "code": {"coding": [{"code": "1"}]}}],
     "dosageInstruction": [{"doseAndRate": [{"doseQuantity": {"value": 1, "unit": "mg"}}],
                            "timing": {"repeat": {"boundsPeriod": {"start": "2020-01-01", "end": "2020-02-01"}}}}]},
    {"resourceType": "ImagingStudy", "id": "s", "status": "available", "subject": {"reference": "Patient/p"},
     "started": "2020-01-01", "series": [{"modality": {"code": "CT"}, "bodySite": {"code": "1"}, "instance": [{}]}]},
    {"resourceType": "Patient", "id": "p", "birthDate": "1970-01-01", "deceasedDateTime": "2020-01-01"},
]


@given(st.sampled_from(TEMPLATES), st.data())
@settings(max_examples=300, deadline=None)
def test_mutated_resources_raise_only_record_error(template: dict[str, Any], data: st.DataObject) -> None:
    r = copy.deepcopy(template)
    for _ in range(data.draw(st.integers(1, 3))):
        paths = _paths(r)
        if not paths:
            break
        path = data.draw(st.sampled_from(paths))
        parent = r
        for k in path[:-1]:
            parent = parent[k]
        parent[path[-1]] = data.draw(json_values)
    _only_record_errors(lambda: parse_bundle({"resourceType": "Bundle", "entry": [{"resource": r}]}, source_name="m"))


@given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_junk_files_raise_only_record_error(tmp_path: Path, payload: bytes) -> None:
    for name in ("x.json", "x.ndjson", "x.vcf"):
        path = tmp_path / name
        path.write_bytes(payload)
        _only_record_errors(lambda path=path: parse_file(path, patient_id="p"))
    path = tmp_path / "x.json"
    path.write_bytes(json.dumps({"resourceType": "Bundle", "entry": [{"resource": {"resourceType": "Observation",
                                 "subject": {"reference": "Patient/p"}, "valueQuantity": payload.decode("latin-1")}}]})
                     .encode())
    _only_record_errors(lambda: parse_file(path))
