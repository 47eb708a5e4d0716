"""Known answers per input kind: FHIR references and mapping rules, NDJSON, VCF, images, CSV."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from core.errors import RecordError
from graph.ingest import expand_paths, ingest_paths, parse_bundle, parse_fhir_resources, parse_file
from graph.schema import NodeType, Rel
from graph.store.base import NodeQuery
from graph.store.sqlite import SQLiteStore

LOINC, SCT = "http://loinc.org", "http://snomed.info/sct"


def bundle(*entries: tuple[str | None, dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "collection",
            "entry": [{**({"fullUrl": u} if u else {}), "resource": r} for u, r in entries]}


def nodes_by_id(pf: Any) -> dict[str, Any]:
    return {n.id: n for n in pf.batch.nodes}


def edges(pf: Any) -> set[tuple[str, str, str]]:
    return {e.key for e in pf.batch.edges}


PATIENT = {"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1970-05-02",
           "name": [{"family": "Secret"}], "telecom": [{"value": "555"}], "address": [{"city": "X"}],
           "identifier": [{"system": "http://hl7.org/fhir/sid/us-ssn", "value": "999-12-3456"}]}


def test_reference_kinds_resolve_and_patient_has_no_identifiers() -> None:
    enc = {"resourceType": "Encounter", "id": "e1", "subject": {"reference": "urn:uuid:pp"},
           "class": {"code": "AMB"}, "period": {"start": "2020-01-01T10:00:00+02:00", "end": "2020-01-01T11:00:00Z"},
           "type": [{"coding": [{"system": SCT, "code": "185349003", "display": "Check up"}]}]}
    med = {"resourceType": "MedicationRequest", "id": "m1", "status": "active", "subject": {"reference": "Patient/p1"},
           "encounter": {"reference": "http://x.org/fhir/Encounter/e1/_history/2"}, "authoredOn": "2020-01-01",
           "medicationReference": {"reference": "#med"},
           "contained": [{"resourceType": "Medication", "id": "med",
                          "code": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                                               "code": "860975"}]}}],
           "reasonReference": [{"reference": "Condition/c1"}],
           "dosageInstruction": [{"doseAndRate": [{"doseQuantity": {"value": 500, "unit": "mg"}}]}]}
    cond = {"resourceType": "Condition", "id": "c1", "subject": {"reference": "Patient/p1"},
            "code": {"coding": [{"system": SCT, "code": "44054006"}]}, "onsetDateTime": "2019-06-01",
            "abatementDateTime": "2021-01-01", "clinicalStatus": {"coding": [{"code": "resolved"}]}}
    pf = parse_bundle(bundle(("urn:uuid:pp", PATIENT), ("urn:uuid:ee", enc), (None, med), (None, cond)),
                      source_name="b.json")
    n = nodes_by_id(pf)
    assert dict(n["Patient/p1"].props) == {"birth_date": "1970-05-02", "birth_year": 1970, "sex": "female"}
    assert n["Encounter/e1"].time == datetime(2020, 1, 1, 8, tzinfo=UTC)
    assert n["MedicationRequest/m1"].code == "860975" and n["MedicationRequest/m1"].value == 500.0
    assert n["Condition/c1"].end == datetime(2021, 1, 1, tzinfo=UTC)
    assert {("Patient/p1", "HAS_ENCOUNTER", "Encounter/e1"),
            ("MedicationRequest/m1", "RECORDED_IN", "Encounter/e1"),
            ("MedicationRequest/m1", "TREATS", "Condition/c1"),
            ("Condition/c1", "CODED_AS", f"Concept/{SCT}|44054006")} <= edges(pf)


def test_skips_are_counted_not_errors() -> None:
    pf = parse_fhir_resources([
        {"resourceType": "Claim", "id": "x"},
        {"resourceType": "Observation", "id": "o2", "status": "cancelled", "subject": {"reference": "Patient/p"}},
        {"resourceType": "Observation", "id": "o4", "subject": {"reference": "Patient/p"}, "hasMember": [],
         "code": {"coding": [{"system": LOINC, "code": "85354-9"}]}},
        {"resourceType": "Condition", "id": "c", "subject": {"reference": "Patient/p"},
         "verificationStatus": {"coding": [{"code": "entered-in-error"}]}},
    ], source_name="r.json")
    assert pf.batch.nodes == []
    assert dict(pf.skipped) == {"Claim": 1, "Observation(cancelled)": 1, "Observation(no value)": 1,
                                "Condition(entered-in-error)": 1}
    assert pf.resources == {"Claim": 1, "Observation": 2, "Condition": 1}
    assert pf.stored == 0


_OBS = {"resourceType": "Observation", "id": "o", "status": "final", "subject": {"reference": "Patient/p"},
        "code": {"coding": [{"system": LOINC, "code": "2339-0"}]}, "valueString": "x"}


@pytest.mark.parametrize(
    ("resources", "resource", "field", "match"),
    [
        pytest.param([{**_OBS, "subject": None}], "Observation/o", "subject", "needs a subject", id="no-subject"),
        pytest.param([{**_OBS, "subject": {"reference": "Group/g"}}], "Observation/o", "subject", "Group",
                     id="group-subject"),
        pytest.param([{**_OBS, "subject": {"reference": "#kid"},
                       "contained": [{"resourceType": "Patient", "id": "kid"}]}], "Observation/o", "subject",
                     "contained", id="contained-patient"),
        pytest.param([{**_OBS, "subject": {"reference": "Patient?identifier=x|1"}}], "Observation/o", "subject",
                     "does not identify", id="conditional-subject"),
        pytest.param([{**_OBS, "code": {}}], "Observation/o", "code", "empty", id="empty-code"),
        pytest.param([{k: v for k, v in _OBS.items() if k != "code"}], "Observation/o", "code", "needs a code",
                     id="no-code"),
        pytest.param([{**_OBS, "valueString": None, "component": [
            {"code": {}, "valueQuantity": {"value": 1, "unit": "mg"}}]}], "Observation/o", "component[0].code",
            "empty", id="empty-component-code"),
        pytest.param([{"resourceType": "Condition", "id": "c", "subject": {"reference": "Patient/p"}, "code": {}}],
                     "Condition/c", "code", "empty", id="empty-condition-code"),
        pytest.param([{"resourceType": "Condition", "id": "c", "code": {"text": "x"}}], "Condition/c", "subject",
                     "needs a subject", id="condition-no-subject"),
        pytest.param([{"resourceType": "MolecularSequence", "id": "m", "variant": [{"start": 1}]}],
                     "MolecularSequence/m", "patient", "needs a patient", id="sequence-no-patient"),
        pytest.param([{"resourceType": "Patient"}], "resource 1", "id", "needs an id", id="patient-no-id"),
        pytest.param([{k: v for k, v in _OBS.items() if k != "id"}], "resource 1", "id", "needs an id",
                     id="observation-no-id"),
    ],
)
def test_incomplete_resources_are_rejected_naming_the_field(resources: list[dict[str, Any]], resource: str,
                                                            field: str, match: str) -> None:
    with pytest.raises(RecordError, match=match) as info:
        parse_fhir_resources(resources, source_name="r.json")
    assert (info.value.file, info.value.resource, info.value.field) == ("r.json", resource, field)


def test_bundle_entries_without_resource() -> None:
    with pytest.raises(RecordError, match="needs a resource") as info:
        parse_bundle({"resourceType": "Bundle", "entry": [{"resource": PATIENT}, {"resource": None}]}, source_name="b")
    assert (info.value.resource, info.value.field) == ("entry 2", "resource")
    pf = parse_bundle({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": PATIENT}, {"request": {"method": "DELETE", "url": "Observation/x"}}]}, source_name="b")
    assert pf.skipped == {"Bundle.entry(request only)": 1} and pf.stored == 1


@pytest.mark.parametrize("btype", ["transaction", "collection", "searchset", "batch", "document", None])
def test_every_bundle_type_is_read(btype: str | None) -> None:
    doc = {**bundle((None, PATIENT)), "type": btype}
    assert [n.id for n in parse_bundle(doc, source_name="b.json").batch.nodes] == ["Patient/p1"]


def test_unknown_bundle_type_names_the_field() -> None:
    with pytest.raises(RecordError, match="unknown Bundle.type 'transactoin'") as err:
        parse_bundle({**bundle((None, PATIENT)), "id": "b7", "type": "transactoin"}, source_name="b.json")
    assert (err.value.file, err.value.resource, err.value.field) == ("b.json", "Bundle/b7", "type")


def test_coded_observation_and_components() -> None:
    bp = {"resourceType": "Observation", "id": "bp", "status": "final", "subject": {"reference": "Patient/p"},
          "effectiveDateTime": "2020-02-02T00:00:00Z", "code": {"coding": [{"system": LOINC, "code": "85354-9"}]},
          "component": [
              {"code": {"coding": [{"system": LOINC, "code": "8480-6"}]},
               "valueQuantity": {"value": 120, "unit": "mmHg", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}},
              {"code": {"coding": [{"system": LOINC, "code": "8462-4"}]}, "dataAbsentReason": {"text": "n/a"}}]}
    coded = {"resourceType": "Observation", "id": "bg", "status": "final", "subject": {"reference": "Patient/p"},
             "code": {"coding": [{"system": LOINC, "code": "883-9"}]},
             "valueCodeableConcept": {"coding": [{"system": SCT, "code": "112144000", "display": "A"}]}}
    n = nodes_by_id(parse_fhir_resources([bp, coded], source_name="o.json"))
    assert set(n) >= {"Observation/bp#8480-6", "Observation/bg"} and "Observation/bp" not in n
    assert n["Observation/bp#8480-6"].value == 120.0 and n["Observation/bp#8480-6"].unit == "mm[Hg]"
    assert n["Observation/bg"].value is None
    assert n["Observation/bg"].props["value_code"] == {"system": SCT, "code": "112144000", "display": "A"}


def test_media_part_of_study_attaches_file(tmp_path: Path) -> None:
    study = {"resourceType": "ImagingStudy", "id": "s1", "status": "available", "subject": {"reference": "Patient/p"},
             "started": "2020-03-03", "series": [{"uid": "1", "modality": {"code": "CT"}, "instance": [{"uid": "2"}]}]}
    media = {"resourceType": "Media", "id": "m1", "status": "completed", "subject": {"reference": "Patient/p"},
             "partOf": [{"reference": "ImagingStudy/s1"}], "content": {"url": "images/p1_0.npy"}}
    lone = {"resourceType": "Media", "id": "m2", "status": "completed", "subject": {"reference": "Patient/p"},
            "createdDateTime": "2020-04-04", "content": {"contentType": "image/png", "url": "x.png"}}
    pf = parse_bundle(bundle((None, study), (None, media), (None, lone)), source_name="b.json", base_dir=tmp_path)
    n = nodes_by_id(pf)
    assert n["ImagingStudy/s1"].props["file"] == "images/p1_0.npy"
    assert n["ImagingStudy/s1"].props["file_path"] == str((tmp_path / "images/p1_0.npy").resolve())
    assert n["ImagingStudy/s1"].props["modality"] == ["CT"] and "Media/m1" not in n
    assert n["Media/m2"].type is NodeType.IMAGE and n["Media/m2"].props["file"] == "x.png"
    assert pf.skipped == {"Media(attached to ImagingStudy)": 1}


def test_genomic_observation_becomes_variant_in_gene() -> None:
    obs = {"resourceType": "Observation", "id": "g1", "status": "final", "subject": {"reference": "Patient/p"},
           "code": {"coding": [{"system": LOINC, "code": "69548-6"}]}, "effectiveDateTime": "2021-01-01",
           "component": [
               {"code": {"coding": [{"system": LOINC, "code": "48018-6"}]},
                "valueCodeableConcept": {"coding": [{"system": "http://www.genenames.org", "code": "HGNC:1100",
                                                     "display": "BRCA1"}]}},
               {"code": {"coding": [{"system": LOINC, "code": "48004-6"}]}, "valueString": "c.68_69delAG"},
               {"code": {"coding": [{"system": LOINC, "code": "53034-5"}]},
                "valueCodeableConcept": {"coding": [{"code": "LA6706-1", "display": "Heterozygous"}]}}]}
    pf = parse_fhir_resources([obs], source_name="g.json")
    v = nodes_by_id(pf)["Observation/g1"]
    assert v.type is NodeType.VARIANT and v.props["gene"] == "BRCA1"
    assert v.props["hgvs_c"] == "c.68_69delAG" and v.props["zygosity"] == "Heterozygous"
    assert {("Patient/p", "CARRIES", "Observation/g1"), ("Observation/g1", "IN_GENE", "Gene/BRCA1")} <= edges(pf)


def test_resource_without_id_takes_its_full_url_never_an_invented_one() -> None:
    res = {"resourceType": "Condition", "subject": {"reference": "Patient/p"},
           "code": {"coding": [{"system": SCT, "code": "1"}]}}
    uuid = "urn:uuid:0b6c1a5e-3c1f-4f5e-9d0e-1f2a3b4c5d6e"
    a = parse_bundle(bundle((uuid, res)), source_name="a").batch.nodes
    b = parse_bundle(bundle(("http://ehr.example/fhir/Condition/c9", res)), source_name="b").batch.nodes
    assert [n.id for n in a if n.type is NodeType.CONDITION] == ["Condition/0b6c1a5e-3c1f-4f5e-9d0e-1f2a3b4c5d6e"]
    assert [n.id for n in b if n.type is NodeType.CONDITION] == ["Condition/c9"]
    with pytest.raises(RecordError, match="needs an id") as info:
        parse_bundle(bundle(("http://ehr.example/fhir/Observation/c9", res)), source_name="c")
    assert (info.value.resource, info.value.field) == ("entry 1", "id")


# ------------------------------------------------------------------ NDJSON
def test_ndjson_bulk_files_link_across_files(tmp_path: Path, sqlite_store: SQLiteStore) -> None:
    (tmp_path / "Observation.ndjson").write_text("\n".join(json.dumps(
        {"resourceType": "Observation", "id": f"o{i}", "status": "final", "subject": {"reference": "Patient/p9"},
         "effectiveDateTime": f"2020-01-0{i + 1}",
         "code": {"coding": [{"system": LOINC, "code": "2339-0"}]},
         "valueQuantity": {"value": 5.0 + i, "unit": "mmol/L"}}) for i in range(3)) + "\n")
    (tmp_path / "Patient.ndjson").write_text(json.dumps({"resourceType": "Patient", "id": "p9"}) + "\n")
    report = ingest_paths(sqlite_store, [tmp_path / "Observation.ndjson", tmp_path / "Patient.ndjson"])
    assert [f.format for f in report.files] == ["fhir-ndjson", "fhir-ndjson"]
    counts = sqlite_store.counts()
    assert counts.pending_edges == 0 and counts.edges["HAS_LAB"] == 3
    labs = sqlite_store.find_nodes(NodeQuery(patient_id="p9", types=(NodeType.LAB,)))
    assert [round(n.value, 3) for n in labs] == [round(x * 18.016, 3) for x in (5.0, 6.0, 7.0)]


def test_expand_paths_folders_and_globs(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.json").write_text("{}")
    (tmp_path / "a" / "notes.txt").write_text("ignored")
    (tmp_path / "a" / "img.npy").write_bytes(b"")
    (tmp_path / "csv").mkdir()
    (tmp_path / "csv" / "patients.csv").write_text("Id,BIRTHDATE\n")
    (tmp_path / "csv" / "sub.json").write_text("{}")
    assert expand_paths([tmp_path]) == [tmp_path / "a" / "x.json", tmp_path / "csv"]
    assert expand_paths([str(tmp_path / "a" / "*.json")]) == [tmp_path / "a" / "x.json"]
    with pytest.raises(RecordError, match="no such file"):
        expand_paths([tmp_path / "missing"])


# ------------------------------------------------------------------ VCF
VCF = """##fileformat=VCFv4.2
##INFO=<ID=GENE,Number=1,Type=String,Description="Gene">
##INFO=<ID=CSQ,Number=.,Type=String,Description="VEP. Format: Allele|Consequence|IMPACT|SYMBOL|Gene">
#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tpA\tpB
17\t43045712\trs80357906\tC\tT\t50\tPASS\tGENE=BRCA1;CLNSIG=Pathogenic\tGT:DP\t0/1:30\t0/0:28
13\t32338000\t.\tA\tG,C\t40\tPASS\tCSQ=G|missense|MODERATE|BRCA2|ENSG1\tGT\t1/1\t./.
7\t55191822\t.\tT\tG\t.\t.\tANN=G|missense_variant|MODERATE|EGFR|ENSG2\tGT\t0|1\t1|1
"""


def test_vcf_samples_genes_zygosity(tmp_path: Path) -> None:
    path = tmp_path / "calls.vcf.gz"
    with gzip.open(path, "wt") as fh:
        fh.write(VCF)
    pf = parse_file(path)
    n = nodes_by_id(pf)
    a1 = n["Variant/pA/17-43045712-C-T"]
    assert (a1.props["gene"], a1.props["zygosity"], a1.props["significance"]) == ("BRCA1", "heterozygous", "Pathogenic")
    assert n["Variant/pA/13-32338000-A-G"].props["zygosity"] == "homozygous"
    assert n["Variant/pA/13-32338000-A-G"].props["gene"] == "BRCA2"
    assert n["Variant/pB/7-55191822-T-G"].props["gene"] == "EGFR"
    assert n["Variant/pB/7-55191822-T-G"].props["zygosity"] == "homozygous"
    assert "Variant/pB/13-32338000-A-C" not in n  # no call
    assert pf.skipped == {"VCF call(hom-ref)": 1, "VCF call(no call or hom-ref)": 1}
    assert pf.resources == {"VCF call": 6} and pf.stored == 4  # 3 records x 2 samples
    assert ("Variant/pA/17-43045712-C-T", Rel.IN_GENE.value, "Gene/BRCA1") in edges(pf)
    one = parse_file(path, patient_id="pB")
    assert {x.patient_id for x in one.batch.nodes if x.type is NodeType.VARIANT} == {"pB"}


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ("##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n1\tx\t.\tA\tC\t.\t.\t.\n", "POS"),
        ("##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n1\t5\t.\tA\n", "columns"),
        ("hello\n", "not a VCF"),
        ("##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\ts\n1\t5\t.\tA\tC\t.\t.\t.\tGT\t0/3\n",
         "does not exist"),
    ],
)
def test_vcf_errors(tmp_path: Path, body: str, match: str) -> None:
    path = tmp_path / "bad.vcf"
    path.write_text(body)
    with pytest.raises(RecordError, match=match):
        parse_file(path, patient_id="p")


# ------------------------------------------------------------------ images
def test_npy_image_needs_time_and_patient(tmp_path: Path) -> None:
    path = tmp_path / "scan.npy"
    np.save(path, np.zeros((8, 8), dtype=np.float32))
    with pytest.raises(RecordError, match="needs a time"):
        parse_file(path, patient_id="p1")
    with pytest.raises(RecordError, match="patient id"):
        parse_file(path, time=datetime(2020, 1, 1, tzinfo=UTC))
    pf = parse_file(path, patient_id="p1", time=datetime(2020, 1, 1, tzinfo=UTC))
    img = next(n for n in pf.batch.nodes if n.type is NodeType.IMAGE)
    assert img.props["shape"] == [8, 8] and img.props["file"] == str(path) and img.patient_id == "p1"
    assert parse_file(path, patient_id="p1", time=datetime(2020, 1, 1, tzinfo=UTC)).batch.nodes[0].id == img.id
    (tmp_path / "junk.npy").write_bytes(b"not numpy")
    with pytest.raises(RecordError, match="npy"):
        parse_file(tmp_path / "junk.npy", patient_id="p1", time=datetime(2020, 1, 1, tzinfo=UTC))


def test_dicom_image_uses_study_date(tmp_path: Path) -> None:
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    path = tmp_path / "ct.dcm"
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.Modality, ds.StudyDate, ds.StudyTime, ds.Rows, ds.Columns = "CT", "20210315", "101500", 4, 4
    ds.PatientName = "Secret^Name"
    ds.BodyPartExamined = "CHEST"
    ds.save_as(path, enforce_file_format=True)
    img = next(n for n in parse_file(path, patient_id="p1").batch.nodes if n.type is NodeType.IMAGE)
    assert img.time == datetime(2021, 3, 15, 10, 15, tzinfo=UTC)
    assert img.code == "CT" and img.props["shape"] == [4, 4] and img.props["body_site"] == ["CHEST"]
    assert "Secret" not in json.dumps(dict(img.props))


# ------------------------------------------------------------------ Synthea CSV
def test_synthea_csv_export(external_dir: Path) -> None:
    pf = parse_file(external_dir / "synthea-csv" / "breast-cancer-cohort")
    assert pf.format == "synthea-csv"
    props = [dict(n.props) for n in pf.batch.nodes if n.type is NodeType.PATIENT]
    assert all(set(p) <= {"birth_date", "birth_year", "sex"} for p in props)
    variants = [n for n in pf.batch.nodes if n.type is NodeType.VARIANT]
    her2 = [v for v in variants if v.props["gene"] == "HER2"]
    assert her2 and all(v.props["vaf_pct"] for v in her2)
    assert {e.rel for e in pf.batch.edges} >= {Rel.CARRIES, Rel.IN_GENE, Rel.TREATS, Rel.RECORDED_IN}


def test_synthea_csv_bad_row_names_line_and_column(tmp_path: Path) -> None:
    (tmp_path / "patients.csv").write_text("Id,BIRTHDATE,GENDER\np1,1980-01-01,F\n")
    (tmp_path / "observations.csv").write_text(
        "DATE,PATIENT,ENCOUNTER,CATEGORY,CODE,DESCRIPTION,VALUE,UNITS,TYPE\n"
        "2020-01-01,p1,,laboratory,2339-0,Glucose,90,mg/dL,numeric\n"
        "2020-01-02,p1,,laboratory,2339-0,Glucose,abc,mg/dL,numeric\n")
    with pytest.raises(RecordError) as info:
        parse_file(tmp_path)
    assert (info.value.resource, info.value.field) == ("observations.csv line 3", "VALUE")
