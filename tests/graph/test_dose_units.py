"""Doses normalised at ingest: dose units and kinds, daily amounts, pulse/period dosing, refusals."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.errors import RecordError
from graph.ingest import ingest_paths, parse_bundle
from graph.schema import Node, Prop
from graph.store.sqlite import SQLiteStore
from graph.units import convert_dose, dose_quantity

RXNORM, SCT = "http://www.nlm.nih.gov/research/umls/rxnorm", "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"
MCODE_DOSE = "http://hl7.org/fhir/us/mcode/StructureDefinition/mcode-radiotherapy-dose-delivered-to-volume"
CANONICAL = {"mg", "mg/m2", "mg/kg", "Gy", "[iU]", "[iU]/m2", "[iU]/kg", "U", "U/m2", "U/kg", "mmol", "mmol/m2",
             "mmol/kg", "meq", "meq/m2", "meq/kg", "mL", "mL/m2", "mL/kg", "1"}
NOT_A_DOSE = "is not a dose unit this engine converts"

amounts = st.floats(min_value=1e-6, max_value=1e9, allow_nan=False, allow_infinity=False)


# ------------------------------------------------------------------ units
@given(amounts, st.sampled_from([("mg", "g"), ("g", "ug"), ("mg", "ug"), ("mg/m2", "g/m2"), ("Gy", "cGy"),
                                 ("mGy", "cGy"), ("mg/kg", "ug/kg"), ("[iU]", "IU"), ("mL", "L")]))
def test_round_trips_within_a_kind(x: float, pair: tuple[str, str]) -> None:
    a, b = pair
    assert convert_dose(convert_dose(x, a, b), b, a) == pytest.approx(x, rel=1e-9)
    # both spellings reach the same canonical amount
    ca, ua = dose_quantity(x, a)
    cb, ub = dose_quantity(convert_dose(x, a, b), b)
    assert ua == ub and cb == pytest.approx(ca, rel=1e-9)


@pytest.mark.parametrize(
    ("value", "unit", "expected"),
    [
        (500, "g", (500_000.0, "mg")),
        (250, "mcg", (0.25, "mg")),
        (300, "mg/m2", (300.0, "mg/m2")),
        (1.5, "g/m2", (1500.0, "mg/m2")),
        (1, "mg/m^2", (1.0, "mg/m2")),
        (5, "mg/kg", (5.0, "mg/kg")),
        (5, "mg.kg-1", (5.0, "mg/kg")),
        (10, "ug/kg", (0.01, "mg/kg")),
        (1, "g/g", (1e6, "mg/kg")),  # g/g cancels in a dimension vector, not in a dose
        (200, "cGy", (2.0, "Gy")),
        (1800, "mGy", (1.8, "Gy")),
        (10_000, "[iU]/m2", (10_000.0, "[iU]/m2")),
        (80, "[IU]/kg", (80.0, "[iU]/kg")),
        (20, "IU", (20.0, "[iU]")),
        (5000, "U", (5000.0, "U")),
        (20, "mEq", (20.0, "meq")),
        (1, "mol", (1000.0, "mmol")),
        (0.5, "L", (500.0, "mL")),
        (30, "mL/kg", (30.0, "mL/kg")),
        (2, None, (2.0, "1")),  # Synthea: {"value": 1}
        (1, "1", (1.0, "1")),
        (2, "{tbl}", (2.0, "1")),
        (2, "TAB", (2.0, "1")),  # HL7 v3 orderableDrugForm, HL7 examples
        (1, "tbl", (1.0, "1")),  # the HL7 examples' UCUM-system spelling of {tbl}
        (2, "tablets", (2.0, "1")),
        (2, "{puff}", (2.0, "1")),
    ],
)
def test_canonical_dose(value: float, unit: str | None, expected: tuple[float, str]) -> None:
    out, canonical = dose_quantity(value, unit)
    assert canonical == expected[1]
    assert out == pytest.approx(expected[0], rel=1e-9)


@given(amounts, st.sampled_from([("mg", "mg/m2"), ("mg/kg", "1"), ("mg/kg", "mg"), ("mg/m2", "mg/kg"),
                                 ("Gy", "mg"), ("[iU]", "U"), ("1", "mg"), ("mg/kg", "%"), ("1", "%")]))
def test_different_kinds_do_not_convert(x: float, pair: tuple[str, str]) -> None:
    a, b = pair
    for src, dst in ((a, b), (b, a)):
        with pytest.raises(RecordError):
            convert_dose(x, src, dst)


@pytest.mark.parametrize("unit", ["xyz", "furlong", "%", "mg/d", "mg/mL", "mg/kg/d", "Cel", "10*3", "m2", "/kg",
                                  "Gy/kg", "/", "10*99999", "kg99999"])
def test_unknown_units_are_refused_with_the_message(unit: str) -> None:
    with pytest.raises(RecordError, match=NOT_A_DOSE) as info:
        dose_quantity(1.0, unit)
    assert repr(unit) in str(info.value)
    assert "mass, mass per m2 or kg, Gy, IU, U, mmol" in str(info.value)


@given(st.text(max_size=30), amounts)
def test_any_unit_is_a_canonical_dose_or_a_record_error(unit: str, x: float) -> None:
    try:
        _, canonical = dose_quantity(x, unit)
    except RecordError:
        return
    assert canonical in CANONICAL


# ------------------------------------------------------------------ ingest
PATIENT = {"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1960-01-01"}
MED = {"medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": "860975", "display": "metformin"}]}}


def bundle(*resources: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "collection",
            "entry": [{"resource": r} for r in (PATIENT, *resources)]}


def node(resource: dict[str, Any]) -> Node:
    pf = parse_bundle(bundle(resource), source_name="doses.json")
    rid = f"{resource['resourceType']}/{resource['id']}"
    return next(n for n in pf.batch.nodes if n.id == rid)


def request(dose: dict[str, Any] | None, timing: dict[str, Any] | None = None) -> dict[str, Any]:
    dosage: dict[str, Any] = {}
    if dose is not None:
        dosage["doseAndRate"] = [{"doseQuantity": dose}]
    if timing is not None:
        dosage["timing"] = timing
    return {"resourceType": "MedicationRequest", "id": "m1", "status": "active", "subject": {"reference": "Patient/p1"},
            "authoredOn": "2024-01-01", **MED, "dosageInstruction": [dosage]}


def procedure(performed: dict[str, Any], extension: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"resourceType": "Procedure", "id": "rt1", "status": "completed", "subject": {"reference": "Patient/p1"},
            "code": {"coding": [{"system": SCT, "code": "1287742003", "display": "Radiotherapy"}]},
            **performed, **({"extension": extension} if extension is not None else {})}


def mcode_dose(value: float, unit: str) -> list[dict[str, Any]]:
    return [{"url": MCODE_DOSE, "extension": [
        {"url": "volume", "valueReference": {"reference": "BodyStructure/b1"}},
        {"url": "totalDoseDelivered", "valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit}},
    ]}]


MG = {"value": 500, "unit": "mg", "system": UCUM, "code": "mg"}


@pytest.mark.parametrize(
    ("timing", "per_day"),
    [
        ({"repeat": {"frequency": 2, "period": 1, "periodUnit": "d"}}, 2.0),
        ({"code": {"coding": [{"code": "BID"}]}}, 2.0),
        ({"repeat": {"frequency": 1, "period": 8, "periodUnit": "h"}}, 3.0),
        ({"repeat": {"frequency": 1, "period": 1, "periodUnit": "wk"}}, 1 / 7),
        ({"repeat": {"frequency": 3}}, 3.0),
        (None, 1.0),
    ],
)
def test_medication_request_is_a_daily_amount_over_a_period(timing: dict[str, Any] | None, per_day: float) -> None:
    n = node(request(MG, timing))
    assert n.unit == "mg" and n.value == pytest.approx(500 * per_day)
    assert n.props[Prop.DOSING] == "period"
    assert n.props[Prop.DOSE_RECORDED] == {"value": 500.0, "unit": "mg", "per_day": pytest.approx(per_day)}


def test_500_mg_bid_is_1000_mg_a_day() -> None:
    n = node(request(MG, {"repeat": {"frequency": 2, "period": 1, "periodUnit": "d"}}))
    assert (n.value, n.unit, n.props[Prop.DOSING]) == (1000.0, "mg", "period")


def test_administration_at_a_time_is_a_pulse_per_body_surface_area() -> None:
    n = node({"resourceType": "MedicationAdministration", "id": "a1", "status": "completed",
              "subject": {"reference": "Patient/p1"}, "effectiveDateTime": "2024-02-01T09:00:00Z", **MED,
              "dosage": {"dose": {"value": 300, "unit": "mg/m2", "system": UCUM, "code": "mg/m2"}}})
    assert (n.value, n.unit, n.props[Prop.DOSING]) == (300.0, "mg/m2", "pulse")
    assert n.props[Prop.DOSE_RECORDED] == {"value": 300.0, "unit": "mg/m2", "per_day": 1.0}


@pytest.mark.parametrize(
    ("effective", "dosing"),
    [
        ({"effectiveDateTime": "2024-02-01"}, "pulse"),
        ({"effectivePeriod": {"start": "2024-02-01T09:00:00Z", "end": "2024-02-01T11:00:00Z"}}, "pulse"),
        ({"effectivePeriod": {"start": "2024-02-01", "end": "2024-03-01"}}, "period"),
        ({"effectivePeriod": {"start": "2024-02-01"}}, "period"),  # open end: ongoing
    ],
)
def test_statement_dosing_follows_its_effective_time(effective: dict[str, Any], dosing: str) -> None:
    n = node({"resourceType": "MedicationStatement", "id": "s1", "status": "active",
              "subject": {"reference": "Patient/p1"}, **effective, **MED,
              "dosage": [{"doseAndRate": [{"doseQuantity": {"value": 2, "unit": "g"}}]}]})
    assert (n.value, n.unit, n.props[Prop.DOSING]) == (2000.0, "mg", dosing)


def test_real_world_count_spellings_ingest_as_counts() -> None:
    orderable = {"value": 2, "unit": "TAB", "system": "http://terminology.hl7.org/CodeSystem/v3-orderableDrugForm",
                 "code": "TAB"}
    for dose in ({"value": 1}, orderable, {"value": 2, "unit": "tablet", "system": UCUM, "code": "tbl"}):
        n = node(request(dose))
        assert n.unit == "1" and n.value == float(dose["value"])


def test_undosed_request_keeps_no_value() -> None:
    n = node(request(None, {"repeat": {"frequency": 2, "period": 1, "periodUnit": "d"}}))
    assert (n.value, n.unit) == (None, None) and Prop.DOSE_RECORDED not in n.props
    assert n.props[Prop.DOSING] == "period"


def test_procedure_with_an_mcode_dose_is_a_pulse_in_gy() -> None:
    n = node(procedure({"performedDateTime": "2024-03-01T10:00:00Z"}, mcode_dose(200, "cGy")))
    assert (n.value, n.unit, n.props[Prop.DOSING]) == (2.0, "Gy", "pulse")
    assert n.props[Prop.DOSE_RECORDED] == {"value": 200.0, "unit": "cGy", "per_day": 1.0}


def test_procedure_dose_over_a_course_is_spread_per_day() -> None:
    n = node(procedure({"performedPeriod": {"start": "2024-03-01T00:00:00Z", "end": "2024-03-31T00:00:00Z"}},
                       mcode_dose(60, "Gy")))
    assert n.props[Prop.DOSING] == "period"
    assert n.unit == "Gy" and n.value == pytest.approx(2.0)


def test_procedure_without_dose_keeps_no_value() -> None:
    other = [{"url": "http://example.org/duration", "valueQuantity": {"value": 20, "unit": "min"}},
             {"url": "http://example.org/fractions", "valueQuantity": {"value": 30, "unit": "{fractions}"}}]
    for ext in (None, other):
        n = node(procedure({"performedPeriod": {"start": "2024-03-01T10:00:00Z", "end": "2024-03-01T10:20:00Z"}},
                           ext))
        assert (n.value, n.unit, n.props[Prop.DOSING]) == (None, None, "pulse")


@pytest.mark.parametrize(
    ("resource", "field"),
    [
        (request({"value": 5, "unit": "mg/d", "system": UCUM, "code": "mg/d"}),
         "dosageInstruction[0].doseAndRate[0].doseQuantity.code"),
        (request({"value": 5, "unit": "furlong"}), "dosageInstruction[0].doseAndRate[0].doseQuantity.unit"),
        (request({"value": -5, "unit": "mg"}), "dosageInstruction[0].doseAndRate[0].doseQuantity.value"),
        (request(MG, {"repeat": {"frequency": 2, "period": 1, "periodUnit": "fortnight"}}),
         "dosageInstruction[0].timing.repeat.periodUnit"),
        (procedure({"performedDateTime": "2024-03-01"}, mcode_dose(200, "rad")),
         "extension[0].extension[1].valueQuantity.code"),
    ],
)
def test_unconvertible_dose_rejects_the_file_and_leaves_the_store(tmp_path: Path, sqlite_store: SQLiteStore,
                                                                   resource: dict[str, Any], field: str) -> None:
    good = tmp_path / "good.json"
    good.write_text(json.dumps(bundle(request(MG))), encoding="utf-8")
    ingest_paths(sqlite_store, [good])
    before = sqlite_store.counts()
    bad = dict(resource, id="bad")
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bundle(bad, procedure({"performedDateTime": "2024-01-01"}))), encoding="utf-8")
    with pytest.raises(RecordError) as info:
        ingest_paths(sqlite_store, [path])
    err = info.value
    assert (err.file, err.resource, err.field) == (str(path), f"{resource['resourceType']}/bad", field)
    assert sqlite_store.counts() == before


junk = st.none() | st.booleans() | st.integers(-10**400, 10**400) | st.floats() | st.text(max_size=12) | st.just({})


@given(st.fixed_dictionaries({}, optional={"frequency": junk, "period": junk, "periodUnit": junk}),
       st.fixed_dictionaries({}, optional={"value": junk, "unit": junk, "code": junk, "system": junk}))
def test_junk_timing_and_dose_raise_only_record_error(repeat: dict[str, Any], dose: dict[str, Any]) -> None:
    try:
        n = node(request(dose, {"repeat": repeat}))
    except RecordError:
        return
    assert n.value is None or (n.value >= 0 and n.unit in CANONICAL)
