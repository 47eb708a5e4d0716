"""Units and names as people read them (display only; stored units stay UCUM)."""

from __future__ import annotations

import pytest

from graph import display_unit, name_with_code
from graph.units import CANONICAL


@pytest.mark.parametrize(("ucum", "shown"), [
    ("mm[Hg]", "mmHg"), ("mL/min/{1.73_m2}", "mL/min/1.73 m²"), ("10*3/uL", "10³/µL"), ("10*9/L", "10⁹/L"),
    ("kg/m2", "kg/m²"), ("ug/L", "µg/L"), ("umol/L", "µmol/L"), ("[iU]/L", "IU/L"), ("Cel", "°C"),
    ("{beats}/min", "beats/min"), ("/a", "/yr"), ("1", ""), ("mg/dL", "mg/dL"), ("%", "%"), ("U/L", "U/L"),
    (None, ""),
])
def test_display_unit_reads_like_print(ucum: str | None, shown: str) -> None:
    assert display_unit(ucum) == shown


def test_no_canonical_lab_unit_keeps_ucum_brackets_or_braces() -> None:
    for code, lab in CANONICAL.items():
        shown = display_unit(lab.unit)
        assert not set("[]{}*") & set(shown), (code, lab.unit, shown)


def test_name_with_code() -> None:
    assert name_with_code("Hemoglobin A1c", "4548-4") == "Hemoglobin A1c (4548-4)"
    assert name_with_code(None, "4548-4") == "4548-4"
    assert name_with_code("metformin", None) == "metformin"
    assert name_with_code("US", "US") == "US"
    assert name_with_code(None, None) == ""


def _study(**extra: object) -> dict[str, object]:
    return {"resourceType": "ImagingStudy", "id": "s1", "status": "available", "subject": {"reference": "Patient/p"},
            "started": "2020-03-03", **extra,
            "series": [{"uid": "1", "modality": {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "US",
                                                 "display": "Ultrasound"},
                        "bodySite": {"system": "http://snomed.info/sct", "code": "64033007",
                                     "display": "Kidney structure"}}]}


def _parse_study(study: dict[str, object]) -> object:
    from graph.ingest import parse_bundle

    doc = {"resourceType": "Bundle", "type": "collection",
           "entry": [{"resource": {"resourceType": "Patient", "id": "p"}}, {"resource": study}]}
    return next(n for n in parse_bundle(doc, source_name="b.json").batch.nodes if n.id == "ImagingStudy/s1")


def test_an_imaging_study_is_named_by_its_description_else_modality_and_site() -> None:
    node = _parse_study(_study())
    assert (node.code, node.display) == ("US", "Ultrasound of Kidney structure")  # type: ignore[attr-defined]
    node = _parse_study(_study(description="Renal ultrasound, both kidneys"))
    assert node.display == "Renal ultrasound, both kidneys"  # type: ignore[attr-defined]


def test_every_synthea_csv_record_keeps_its_description(external_dir) -> None:  # type: ignore[no-untyped-def]
    from graph import NodeType
    from graph.ingest import parse_file

    kinds = {NodeType.CONDITION, NodeType.MEDICATION, NodeType.LAB, NodeType.PROCEDURE, NodeType.ENCOUNTER,
             NodeType.IMAGE}
    records = [n for folder in ("breast-cancer-cohort", "dbt-synthea-seed")
               for n in parse_file(external_dir / "synthea-csv" / folder).batch.nodes if n.type in kinds]
    assert {n.type for n in records} >= {NodeType.CONDITION, NodeType.MEDICATION, NodeType.LAB}
    unnamed = [n.id for n in records if not n.display]
    assert not unnamed, unnamed[:5]
    images = [n for n in records if n.type is NodeType.IMAGE]
    assert all(" of " in (n.display or "") for n in images)
