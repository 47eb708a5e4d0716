"""Every external record file ingests (or is refused, when its records reference patients the data
does not hold); node counts, re-ingest and cohorts agree with the raw files.

The expected numbers are computed here straight from the raw JSON/CSV with the documented
mapping rules (which resources become which nodes), independently of the parser code.
"""

from __future__ import annotations

import csv
import json
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from graph.ingest import ingest_paths
from graph.predicates import HasCondition, LabValue
from graph.store.base import NodeQuery
from graph.store.sqlite import SQLiteStore

GENE_EXT = "http://hl7.org/fhir/StructureDefinition/observation-geneticsGene"
VALUE_KEYS = ("valueCodeableConcept", "valueString", "valueBoolean", "valueDateTime", "valueTime",
              "valueRange", "valueRatio", "valuePeriod", "valueSampledData")


# ------------------------------------------------------------------ raw-file readers (no parser code)
def fhir_files(root: Path) -> list[Path]:
    return sorted((root / "fhir-examples").glob("*.json")) + sorted((root / "synthea-fhir").glob("*.json"))


def raw_entries(path: Path) -> list[tuple[str | None, dict[str, Any]]]:
    """``(fullUrl, resource)`` of a file: Bundle entries with a resource, or the single resource."""
    doc = json.loads(path.read_text(encoding="utf-8"))
    if doc.get("resourceType") == "Bundle":
        return [(e.get("fullUrl"), e["resource"]) for e in doc.get("entry", [])
                if "resource" in e and e["resource"].get("resourceType") != "Bundle"]
    return [(None, doc)]


def key_of(r: dict[str, Any]) -> str:
    return f"{r['resourceType']}/{r['id']}" if "id" in r else f"{r['resourceType']}/{json.dumps(r, sort_keys=True)}"


def patient_ref(r: dict[str, Any], by_url: dict[str, dict[str, Any]], field: str = "subject") -> str | None:
    """The Patient id a resource points at (fullUrl lookups, then a trailing Patient/<id>)."""
    ref = (r.get(field) or {}).get("reference")
    if not ref or ref.startswith("#"):
        return None
    if ref in by_url:
        target = by_url[ref]
        return key_of(target).split("/", 1)[1] if target["resourceType"] == "Patient" else None
    m = re.search(r"Patient/([^/]+?)(?:/_history/.*)?$", ref)
    return m.group(1) if m else None


def codes(cc: dict[str, Any] | None) -> set[str]:
    return {c.get("code") for c in (cc or {}).get("coding", []) if c.get("code")}


def is_numeric(holder: dict[str, Any]) -> bool:
    return "value" in (holder.get("valueQuantity") or {}) or "valueInteger" in holder


def has_any_value(holder: dict[str, Any]) -> bool:
    return is_numeric(holder) or any(k in holder for k in VALUE_KEYS)


def is_genomic(r: dict[str, Any]) -> bool:
    return (bool(codes(r.get("code")) & {"55233-1", "69548-6", "81247-9"})
            or any(e.get("url") == GENE_EXT for e in r.get("extension", []))
            or any("48018-6" in codes(c.get("code")) for c in r.get("component", [])))


def becomes_node(r: dict[str, Any]) -> bool:
    """Whether a resource is mapped to a node once it has a patient (the skip rules that come first)."""
    t, status = r["resourceType"], r.get("status")
    if t in ("Encounter", "ImagingStudy"):
        return status != "entered-in-error"
    if t == "Condition":
        return not codes(r.get("verificationStatus")) & {"entered-in-error", "refuted"}
    if t == "MedicationRequest":
        return status not in ("entered-in-error", "cancelled")
    if t in ("MedicationAdministration", "Procedure"):
        return status not in ("entered-in-error", "not-done")
    if t == "MedicationStatement":
        return status not in ("entered-in-error", "not-taken")
    if t == "DiagnosticReport":
        return bool(r.get("media") or r.get("imagingStudy") or any(
            str(f.get("contentType", "")).startswith("image/") for f in r.get("presentedForm", []))) \
            and status != "entered-in-error"
    if t == "Observation":
        return status not in ("cancelled", "entered-in-error")
    return t == "MolecularSequence"


def stores_something(r: dict[str, Any]) -> bool:
    """Whether a mapped resource with a patient gives a node (a panel without values gives none,
    so its patient is never looked up)."""
    if r["resourceType"] == "Observation":
        return is_genomic(r) or has_any_value(r) or any(has_any_value(c) for c in r.get("component", []))
    if r["resourceType"] == "MolecularSequence":
        return bool(r.get("variant"))
    return True


def all_patients(root: Path) -> set[str]:
    """Every patient id in the external data (FHIR Patient resources and CSV patients)."""
    ids = {key_of(r).split("/", 1)[1] for path in fhir_files(root) for _, r in raw_entries(path)
           if r["resourceType"] == "Patient"}
    for export in csv_exports(root):
        ids |= {row["Id"] for row in read_csv(export / "patients.csv")}
    return ids


def rejected_fhir_files(root: Path) -> dict[str, set[str]]:
    """FHIR files that must be refused whole, with the resources that cause it: a record that
    becomes a node but has no Patient subject (missing, contained) or one of a patient that
    exists nowhere in the data (the HL7 examples reference patients they do not include)."""
    patients = all_patients(root)
    out: dict[str, set[str]] = {}
    for path in fhir_files(root):
        entries = raw_entries(path)
        by_url = {u: r for u, r in entries if u}
        for _, r in entries:
            by_url.setdefault(key_of(r), r)
        for url, r in entries:
            t = r["resourceType"]
            if t == "Patient" or not becomes_node(r):
                continue
            pid = patient_ref(r, by_url, "patient" if t == "MolecularSequence" else "subject")
            if pid is None or (pid not in patients and stores_something(r)):
                named = f"{t}/{url.removeprefix('urn:uuid:')}" if "id" not in r and url else key_of(r)
                out.setdefault(path.name, set()).add(named)
    return out


def accepted_fhir_files(root: Path) -> list[Path]:
    rejected = rejected_fhir_files(root)
    return [p for p in fhir_files(root) if p.name not in rejected]


def expected_fhir(root: Path) -> tuple[dict[str, set[str]], set[str]]:
    """Expected node ids by type for all FHIR files that are accepted, and the expected gene symbols."""
    out: dict[str, set[str]] = defaultdict(set)
    genes: set[str] = set()
    for path in accepted_fhir_files(root):
        entries = raw_entries(path)
        by_url = {u: r for u, r in entries if u}
        for _, r in entries:
            by_url.setdefault(key_of(r), r)
        for _, r in entries:
            t, k, status = r["resourceType"], key_of(r), r.get("status")
            pid = patient_ref(r, by_url, "patient" if t == "MolecularSequence" else "subject")
            if t == "Patient":
                out["Patient"].add(k)
            elif pid is None:
                continue
            elif t == "Encounter" and status != "entered-in-error":
                out["Encounter"].add(k)
            elif t == "Condition" and not codes(r.get("verificationStatus")) & {"entered-in-error", "refuted"}:
                out["Condition"].add(k)
            elif t == "MedicationRequest" and status not in ("entered-in-error", "cancelled") or \
                    t == "MedicationAdministration" and status not in ("entered-in-error", "not-done") or \
                    t == "MedicationStatement" and status not in ("entered-in-error", "not-taken"):
                out["Medication"].add(k)
            elif t == "Procedure" and status not in ("entered-in-error", "not-done"):
                out["Procedure"].add(k)
            elif t == "ImagingStudy" and status != "entered-in-error":
                out["Image"].add(k)
            elif t == "DiagnosticReport" and (r.get("media") or r.get("imagingStudy") or any(
                    str(f.get("contentType", "")).startswith("image/") for f in r.get("presentedForm", []))):
                out["Image"].add(k)
            elif t == "MolecularSequence":
                out["Variant"].update(f"{k}#{i}" for i in range(len(r.get("variant", []))))
            elif t == "Observation" and status not in ("cancelled", "entered-in-error"):
                if is_genomic(r):
                    out["Variant"].add(k)
                    for e in r.get("extension", []):
                        if e.get("url") == GENE_EXT:
                            c = e["valueCodeableConcept"]["coding"][0]
                            genes.add((c.get("display") or c["code"]).upper())
                    continue
                comps = r.get("component", [])
                numeric = [c for c in comps if is_numeric(c)]
                out["Lab"].update(f"{k}#component{i}" for i, _ in enumerate(numeric))
                if has_any_value(r) or (not numeric and any(has_any_value(c) for c in comps)):
                    out["Lab"].add(k)
    return out, genes


def read_csv(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def expected_csv(export: Path) -> tuple[dict[str, int], set[str]]:
    genes = {g.strip().upper() for row in read_csv(export / "breast_cancer_clone_groups.csv")
             for g in row["genes"].split(";") if g.strip()}
    obs = read_csv(export / "observations.csv")
    return {
        "Patient": len(read_csv(export / "patients.csv")),
        "Encounter": len(read_csv(export / "encounters.csv")),
        "Condition": len(read_csv(export / "conditions.csv")),
        "Medication": len(read_csv(export / "medications.csv")),
        "Procedure": len(read_csv(export / "procedures.csv")),
        "Lab": sum(1 for o in obs if o["VALUE"].strip() not in ("", "null")),
        "Image": len({row["Id"] for row in read_csv(export / "imaging_studies.csv")}),
        "Variant": sum(len([g for g in row["genes"].split(";") if g.strip()])
                       for row in read_csv(export / "breast_cancer_clone_groups.csv")),
    }, genes


def csv_exports(root: Path) -> list[Path]:
    return sorted(p for p in (root / "synthea-csv").iterdir() if (p / "patients.csv").is_file())


# ------------------------------------------------------------------ tests
@pytest.fixture(scope="module")
def ingested(external_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[SQLiteStore, Any]:
    store = SQLiteStore(tmp_path_factory.mktemp("external") / "all.db")
    report = ingest_paths(store, [external_dir], keep_going=True)
    yield store, report
    store.close()


def test_every_external_file_ingests_or_is_refused_naming_the_record(
    ingested: tuple[SQLiteStore, Any], external_dir: Path
) -> None:
    """Every file is read; exactly the files holding a record without a (known) patient are
    refused, each error naming that record and its patient field, and nothing of them is stored."""
    store, report = ingested
    paths = {Path(f.path).resolve() for f in report.files}
    assert paths == {p.resolve() for p in fhir_files(external_dir)} | {p.resolve() for p in csv_exports(external_dir)}
    expected = rejected_fhir_files(external_dir)
    assert expected  # the HL7 examples do reference patients they do not include
    got = {Path(e["file"]).name: e for e in report.errors}
    assert set(got) == set(expected)
    for name, err in got.items():
        assert err["resource"] in expected[name] and err["field"] in ("subject", "patient"), err
    assert report.totals["failed_files"] == report.totals["rejected"] == len(expected)
    refused = [r for name in expected for r in expected[name]]
    assert store.get_nodes(refused) == []
    assert report.totals["resources"] == report.totals["stored"] + report.totals["skipped"]
    json.dumps(report.to_dict())  # JSON-ready


def test_node_counts_match_raw_files(ingested: tuple[SQLiteStore, Any], external_dir: Path) -> None:
    store, _ = ingested
    fhir, genes = expected_fhir(external_dir)
    expected = {t: len(ids) for t, ids in fhir.items()}
    for export in csv_exports(external_dir):
        counts, csv_genes = expected_csv(export)
        genes |= csv_genes
        for t, n in counts.items():
            expected[t] = expected.get(t, 0) + n
    nodes = store.counts().nodes
    for t in ("Patient", "Encounter", "Condition", "Medication", "Procedure", "Lab", "Image", "Variant"):
        assert nodes.get(t, 0) == expected.get(t, 0), t
    assert nodes["Gene"] == len(genes)
    # every coded event has exactly one CODED_AS edge and every Concept is used
    coded = store.find_edges(rels=["CODED_AS"])
    assert len({e.dst for e in coded}) == nodes["Concept"]
    assert len(coded) == len({e.src for e in coded})


def test_every_treatment_record_says_how_it_was_given(ingested: tuple[SQLiteStore, Any]) -> None:
    """Medications and procedures from every real export (FHIR and CSV) carry ``dosing``; a
    procedure is one administration unless it lasted over a day."""
    store, _ = ingested
    for t in ("Medication", "Procedure"):
        nodes = list(store.find_nodes(NodeQuery(types=[t])))
        assert nodes and all(n.props.get("dosing") in ("pulse", "period") for n in nodes), t
        if t == "Procedure":
            for n in nodes:
                long = n.end is not None and n.time is not None and (n.end - n.time).total_seconds() > 86400
                assert n.props["dosing"] == ("period" if long else "pulse"), n.id


def test_bp_components_and_units_in_store(ingested: tuple[SQLiteStore, Any]) -> None:
    store, _ = ingested
    sys_nodes = store.find_nodes(NodeQuery(types=("Lab",), codes=("8480-6",)))
    from_fhir = [n for n in sys_nodes if n.source and n.source.startswith("fhir:")]
    assert from_fhir and all(n.id.endswith("#8480-6") for n in from_fhir)
    assert all(n.unit == "mm[Hg]" and n.value is not None for n in sys_nodes)
    weight = store.get_nodes(["Observation/example"])[0]  # HL7 example: 185 [lb_av]
    assert weight.unit == "kg" and weight.value == pytest.approx(185 * 0.45359237)


def test_no_direct_identifiers_stored(ingested: tuple[SQLiteStore, Any]) -> None:
    store, _ = ingested
    text = json.dumps([dict(n.props) for n in store.find_nodes(NodeQuery(types=("Patient",)))])
    for banned in ("name", "address", "telecom", "identifier", "ssn", "passport", "drivers", "Murazik"):
        assert banned not in text.lower()
    assert not re.search(r"\b999-\d\d-\d{4}\b", text)  # Synthea SSNs


def test_reingest_adds_nothing(ingested: tuple[SQLiteStore, Any], external_dir: Path) -> None:
    store, _ = ingested
    before = store.counts()
    again = ingest_paths(store, [external_dir], keep_going=True)
    assert again.totals["nodes_added"] == 0 and again.totals["edges_added"] == 0
    assert all(f.stats is not None and f.stats.nodes_added == 0 for f in again.files if f.error is None)
    assert len(again.errors) == len(rejected_fhir_files(external_dir))
    assert store.counts() == before


# ------------------------------------------------------------------ cohorts vs raw files
def raw_patients_with_condition(root: Path, code: str) -> set[str]:
    found = set()
    for path in accepted_fhir_files(root):
        entries = raw_entries(path)
        by_url = {u: r for u, r in entries if u}
        for _, r in entries:
            if r["resourceType"] == "Condition" and code in codes(r.get("code")):
                pid = patient_ref(r, by_url)
                if pid:
                    found.add(pid)
    for export in csv_exports(root):
        found |= {row["PATIENT"] for row in read_csv(export / "conditions.csv") if row["CODE"] == code}
    return found


def raw_patients_with_glucose_above(root: Path, threshold_mg_dl: float) -> set[str]:
    factor = {"mg/dL": 1.0, "mmol/L": 18.016}
    found = set()
    for path in accepted_fhir_files(root):
        entries = raw_entries(path)
        by_url = {u: r for u, r in entries if u}
        for _, r in entries:
            if r["resourceType"] != "Observation" or "2339-0" not in codes(r.get("code")):
                continue
            q = r.get("valueQuantity") or {}
            if "value" in q and q["value"] * factor[q.get("code") or q["unit"]] > threshold_mg_dl:
                pid = patient_ref(r, by_url)
                if pid:
                    found.add(pid)
    for export in csv_exports(root):
        for row in read_csv(export / "observations.csv"):
            if row["CODE"] == "2339-0" and row["TYPE"] == "numeric":
                if float(row["VALUE"]) * factor[row["UNITS"]] > threshold_mg_dl:
                    found.add(row["PATIENT"])
    return found


@pytest.mark.parametrize("code", ["38341003", "44054006", "15777000", "254837009", "195662009"])
def test_condition_cohort_matches_raw(ingested: tuple[SQLiteStore, Any], external_dir: Path, code: str) -> None:
    store, _ = ingested
    expected = raw_patients_with_condition(external_dir, code)
    assert store.cohort(HasCondition(code)) == sorted(expected)


@pytest.mark.parametrize("threshold", [100.0, 95.0, 90.0, 80.0])
def test_glucose_cohort_matches_raw(ingested: tuple[SQLiteStore, Any], external_dir: Path, threshold: float) -> None:
    store, _ = ingested
    expected = raw_patients_with_glucose_above(external_dir, threshold)
    if threshold <= 95.0:
        assert expected  # non-trivial: the data has such patients (none above 100 mg/dL)
    assert store.cohort(LabValue("2339-0", ">", threshold)) == sorted(expected)
