"""Synthea CSV exports (v3.0 and v3.3 column sets) into the patient graph.

One export folder (``patients.csv`` plus per-table files) is one batch. Tables and nodes:

| table | node | id |
|---|---|---|
| patients | ``Patient`` (BIRTHDATE, GENDER; DEATHDATE as ``end``; no SSN/names/addresses) | ``Patient/{Id}`` |
| encounters | ``Encounter`` (ENCOUNTERCLASS, CODE) | ``Encounter/{Id}`` |
| conditions | ``Condition`` (START/STOP) | ``Condition/{row hash}`` |
| medications | ``Medication`` (START/STOP, ``dosing: "period"``, no dose; REASONCODE -> ``TREATS`` the patient's latest matching Condition started by then) | ``MedicationRequest/{row hash}`` |
| procedures | ``Procedure`` | ``Procedure/{row hash}`` |
| observations | ``Lab``: TYPE ``numeric`` -> canonical-unit value, else ``value=None`` with ``props["value_string"]`` | ``Observation/{row hash}`` |
| imaging_studies | ``Image`` (rows grouped by study Id: modalities, body sites, instances) | ``ImagingStudy/{Id}`` |
| breast_cancer_clone_groups | one ``Variant`` per (clone, gene symbol in ``genes``), ``CARRIES`` + ``IN_GENE``; time = first sequencing time point; VAF series from ``breast_cancer_clone_proportions`` | ``Variant/clone/{patient}/{clone_id}/{gene}`` |

Rows without their own id get a hash of table name and row content, so re-ingest is
idempotent. Every row's patient (``PATIENT``) must exist: in this export's ``patients.csv`` or
already in the store, else the export is rejected naming the row. Other tables (allergies, careplans, immunizations, devices, supplies, payers,
providers, organizations, ...) are counted and skipped.
"""

from __future__ import annotations

import csv
import math
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

from core.errors import RecordError
from graph.ingest.builder import BatchBuilder, ParsedFile
from graph.ingest.fields import LOINC, PERIOD, PULSE, RXNORM, SNOMED, content_id
from graph.schema import Node, NodeType, Prop, Rel
from graph.timeutil import parse_fhir_time
from graph.units import to_canonical

__all__ = ["parse_synthea_csv"]

_SYSTEMS = {"SNOMED-CT": SNOMED, "SNOMED": SNOMED, "LOINC": LOINC, "RXNORM": RXNORM,
            "ICD10": "http://hl7.org/fhir/sid/icd-10-cm", "ICD-10": "http://hl7.org/fhir/sid/icd-10-cm"}
_SEX = {"M": "male", "F": "female"}
_HANDLED = {"patients", "encounters", "conditions", "medications", "procedures", "observations",
            "imaging_studies", "breast_cancer_clone_groups", "breast_cancer_clone_proportions"}
_TYPE_OF = {"patients": "Patient", "encounters": "Encounter", "conditions": "Condition",
            "medications": "MedicationRequest", "procedures": "Procedure", "observations": "Observation",
            "imaging_studies": "ImagingStudy", "breast_cancer_clone_groups": "CloneGroup"}


class _Row:
    """One CSV row with located, typed accessors."""

    __slots__ = ("data", "file", "label", "table")

    def __init__(self, table: str, file: str, line: int, data: dict[str, str]) -> None:
        self.table, self.file, self.data = table, file, data
        self.label = f"{table}.csv line {line}"

    def error(self, reason: str, column: str | None = None) -> RecordError:
        return RecordError(reason, file=self.file, resource=self.label, field=column)

    def get(self, column: str) -> str | None:
        v = self.data.get(column)
        return v.strip() if v is not None and v.strip() and v.strip() != "null" else None

    def need(self, column: str) -> str:
        v = self.get(column)
        if v is None:
            raise self.error("required value is missing", column)
        return v

    def time(self, column: str, required: bool = False) -> datetime | None:
        v = self.need(column) if required else self.get(column)
        if v is None:
            return None
        try:
            return parse_fhir_time(v)
        except (ValueError, OverflowError):
            raise self.error(f"not a valid date/dateTime: {v[:40]!r}", column) from None

    def row_id(self) -> str:
        return content_id([self.table, self.data])


def _read(path: Path, table: str) -> list[_Row]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            rows = []
            for data in reader:
                if None in data:  # more cells than header columns
                    raise RecordError("row has more cells than the header", file=str(path),
                                      resource=f"{table}.csv line {reader.line_num}")
                rows.append(_Row(table, str(path), reader.line_num, data))
            return rows
    except UnicodeDecodeError as exc:
        raise RecordError(f"not UTF-8 text (byte {exc.start})", file=str(path)) from None
    except csv.Error as exc:
        raise RecordError(f"malformed CSV: {exc}", file=str(path)) from None
    except OSError as exc:
        raise RecordError(f"cannot read file: {exc.strerror or exc}", file=str(path)) from None


class _Export:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.b = BatchBuilder()
        self.resources: Counter[str] = Counter()
        self.skipped: Counter[str] = Counter()
        self.encounters: set[str] = set()
        #: (patient, condition code) -> [(onset, node id)] for TREATS links
        self.conditions: dict[tuple[str, str], list[tuple[datetime | None, str]]] = {}

    def table(self, name: str) -> list[_Row]:
        path = self.folder / f"{name}.csv"
        if not path.is_file():
            return []
        rows = _read(path, name)
        if rows:
            self.resources[_TYPE_OF[name]] += len(rows)
        return rows

    def patient(self, row: _Row, column: str = "PATIENT") -> str:
        """The row's patient id (required); whether that patient exists is checked when the
        export is written (in this export's ``patients.csv`` or already stored)."""
        pid = row.need(column)
        self.b.origin = (row.label, column)
        return pid

    def encounter(self, row: _Row) -> str | None:
        enc = row.get("ENCOUNTER")
        return f"Encounter/{enc}" if enc and enc in self.encounters else None

    def system(self, row: _Row, default: str) -> str:
        s = row.get("SYSTEM")
        return _SYSTEMS.get(s.upper(), s) if s else default

    def src(self, row: _Row, rid: str) -> str:
        return f"synthea-csv:{row.table}/{rid}"


def _event(ex: _Export, row: _Row, ntype: NodeType, prefix: str, rid: str, pid: str, *, time: datetime | None,
           end: datetime | None, code: str | None, system: str | None, props: dict[str, Any],
           value: float | None = None, unit: str | None = None) -> Node:
    node = Node(id=f"{prefix}/{rid}", type=ntype, patient_id=pid, time=time, end=end, code=code, system=system,
                display=row.get("DESCRIPTION"), value=value, unit=unit,
                props={k: v for k, v in props.items() if v is not None}, source=ex.src(row, rid))
    ex.b.event(node, encounter_id=ex.encounter(row))
    return node


def parse_synthea_csv(folder: str | Path) -> ParsedFile:
    """Parse one Synthea CSV export folder into a single batch (see module docstring)."""
    ex = _Export(Path(folder))
    for row in ex.table("patients"):
        patient_id = row.need("Id")
        birth = row.time("BIRTHDATE", required=True)
        props: dict[str, Any] = {Prop.BIRTH_DATE: row.need("BIRTHDATE")[:10], Prop.BIRTH_YEAR: birth.year if birth else None}
        gender = row.get("GENDER")
        if gender:
            props[Prop.SEX] = _SEX.get(gender.upper(), gender.lower())
        ex.b.add(Node(id=f"Patient/{patient_id}", type=NodeType.PATIENT, patient_id=patient_id, end=row.time("DEATHDATE"),
                      props=props, source=ex.src(row, patient_id)))
    enc_rows = ex.table("encounters")
    ex.encounters.update(r.need("Id") for r in enc_rows)
    for row in enc_rows:
        pid = ex.patient(row)
        rid = row.need("Id")
        props = {"class": row.get("ENCOUNTERCLASS"), "reason_code": row.get("REASONCODE")}
        _event(ex, row, NodeType.ENCOUNTER, "Encounter", rid, pid, time=row.time("START", True), end=row.time("STOP"),
               code=row.get("CODE"), system=SNOMED, props=props)
    for row in ex.table("conditions"):
        pid = ex.patient(row)
        code, onset = row.need("CODE"), row.time("START", True)
        node = _event(ex, row, NodeType.CONDITION, "Condition", row.row_id(), pid, time=onset, end=row.time("STOP"),
                      code=code, system=ex.system(row, SNOMED), props={})
        ex.conditions.setdefault((pid, code), []).append((onset, node.id))
    for row in ex.table("medications"):
        _medication(ex, row)
    for row in ex.table("procedures"):
        pid = ex.patient(row)
        start, stop = row.time("START", True), row.time("STOP")
        # one procedure is a pulse, as in FHIR: only one lasting over a day is a period
        dosing = PERIOD if start and stop and (stop - start).total_seconds() > 86400 else PULSE
        _event(ex, row, NodeType.PROCEDURE, "Procedure", row.row_id(), pid, time=start, end=stop,
               code=row.need("CODE"), system=ex.system(row, SNOMED),
               props={"reason_code": row.get("REASONCODE"), Prop.DOSING: dosing})
    for row in ex.table("observations"):
        _observation(ex, row)
    _imaging(ex, ex.table("imaging_studies"))
    _clones(ex)
    for path in sorted(ex.folder.glob("*.csv")):
        if path.stem not in _HANDLED:
            n = sum(1 for _ in _read(path, path.stem))
            ex.resources[f"{path.stem}.csv"] += n
            ex.skipped[f"{path.stem}.csv"] += n
    return ParsedFile(str(ex.folder), "synthea-csv", ex.b.batch(), ex.resources, ex.skipped, ex.b.origins)


def _medication(ex: _Export, row: _Row) -> None:
    pid = ex.patient(row)
    start = row.time("START", True)
    dispenses = row.get("DISPENSES")
    props: dict[str, Any] = {"reason_code": row.get("REASONCODE"), "resource_type": "MedicationRequest",
                             Prop.DOSING: PERIOD}
    if dispenses is not None:
        try:
            props["dispenses"] = int(float(dispenses))
        except (ValueError, OverflowError):
            raise row.error(f"not a number: {dispenses[:40]!r}", "DISPENSES") from None
    node = _event(ex, row, NodeType.MEDICATION, "MedicationRequest", row.row_id(), pid, time=start,
                  end=row.time("STOP"), code=row.need("CODE"), system=RXNORM, props=props)
    reason = row.get("REASONCODE")
    if reason:
        candidates = [(t, cid) for t, cid in ex.conditions.get((pid, reason), []) if t is None or start is None or t <= start]
        if candidates:
            ex.b.link(node.id, Rel.TREATS, max(candidates, key=lambda c: (c[0] is not None, c[0] or start))[1], pid)


def _observation(ex: _Export, row: _Row) -> None:
    pid = ex.patient(row)
    code = row.need("CODE")
    kind = (row.get("TYPE") or "").lower()
    raw = row.get("VALUE")
    props: dict[str, Any] = {"category": row.get("CATEGORY")}
    value = unit = None
    if raw is None:
        ex.skipped["Observation(no value)"] += 1
        return
    if kind == "numeric":
        try:
            x = float(raw)
        except ValueError:
            raise row.error(f"TYPE is numeric but VALUE is not a number: {raw[:40]!r}", "VALUE") from None
        if not math.isfinite(x):
            raise row.error(f"value must be finite, got {raw!r}", "VALUE")
        try:
            value, unit = to_canonical(code, x, row.get("UNITS"))
        except RecordError as exc:
            raise row.error(exc.reason, "VALUE" if exc.field == "value" else "UNITS") from None
    else:
        props["value_string"] = raw
        if row.get("UNITS"):
            props["value_unit"] = row.get("UNITS")
    _event(ex, row, NodeType.LAB, "Observation", row.row_id(), pid, time=row.time("DATE", True), end=None,
           code=code, system=LOINC, props=props, value=value, unit=unit)


def _imaging(ex: _Export, rows: list[_Row]) -> None:
    studies: dict[str, list[_Row]] = {}
    for row in rows:
        studies.setdefault(row.need("Id"), []).append(row)
    for sid, group in studies.items():
        first = group[0]
        pid = ex.patient(first)
        modalities = sorted({m for r in group if (m := r.get("MODALITY_CODE"))})
        sites = sorted({s for r in group if (s := r.get("BODYSITE_CODE"))})
        proc = first.get("PROCEDURE_CODE")
        code, system = (proc, SNOMED) if proc else ((modalities[0], "http://dicom.nema.org/resources/ontology/DCM")
                                                     if modalities else (None, None))
        props = {"modality": modalities or None, "body_site": sites or None, "instances": len(group),
                 "source_type": "ImagingStudy"}
        node = Node(id=f"ImagingStudy/{sid}", type=NodeType.IMAGE, patient_id=pid, time=first.time("DATE", True),
                    code=code, system=system, display=_study_name(group),
                    props={k: v for k, v in props.items() if v is not None}, source=ex.src(first, sid))
        ex.b.event(node, encounter_id=ex.encounter(first))


def _study_name(rows: list[_Row]) -> str | None:
    """``"Digital Radiography of Structure of ..."``: an imaging study's modalities and body sites
    by their descriptions (as the FHIR ImagingStudy mapping names a study without a description)."""
    mods = list(dict.fromkeys(m for r in rows if (m := r.get("MODALITY_DESCRIPTION") or r.get("MODALITY_CODE"))))
    sites = list(dict.fromkeys(s for r in rows if (s := r.get("BODYSITE_DESCRIPTION") or r.get("BODYSITE_CODE"))))
    name = " ".join(mods) + (f" of {', '.join(sites)}" if sites else "")
    return name.strip() or None


def _clones(ex: _Export) -> None:
    vaf: dict[tuple[str, str], dict[str, float]] = {}
    prop_path = ex.folder / "breast_cancer_clone_proportions.csv"
    if prop_path.is_file():
        rows = _read(prop_path, "breast_cancer_clone_proportions")
        ex.resources["breast_cancer_clone_proportions.csv"] += len(rows)
        for row in rows:
            series: dict[str, float] = {}
            for k in range(10):
                date, pct = row.get(f"t{k}_date"), row.get(f"t{k}_vaf_pct")
                if date is None or pct is None:
                    continue
                try:
                    series[date] = float(pct)
                except ValueError:
                    raise row.error(f"not a number: {pct[:40]!r}", f"t{k}_vaf_pct") from None
            vaf[(row.need("patient_id"), row.need("clone_id"))] = series
    for row in ex.table("breast_cancer_clone_groups"):
        pid = ex.patient(row, "patient_id")
        clone = row.need("clone_id")
        dates = [d for d in (row.get("timepoint_dates") or "").split(";") if d.strip()]
        time = None
        if dates:
            try:
                time = min(parse_fhir_time(d) for d in dates)
            except ValueError:
                raise row.error("not a ';'-separated list of dateTimes", "timepoint_dates") from None
        genes = [g.strip() for g in (row.get("genes") or "").split(";") if g.strip()]
        if not genes:
            ex.skipped["CloneGroup(no gene)"] += 1
        for gene in genes:
            props = {"kind": "somatic-clone", "clone_id": clone, "clone_type": row.get("clone_type"),
                     "parent_clone_id": row.get("parent_clone_id"), "signature": row.get("signature_key"),
                     Prop.GENE: gene, "genomic_source": "somatic", "vaf_pct": vaf.get((pid, clone))}
            vid = f"Variant/clone/{pid}/{clone}/{gene}"
            ex.b.variant(Node(id=vid, type=NodeType.VARIANT, patient_id=pid, time=time, display=f"{gene} ({clone})",
                              props={k: v for k, v in props.items() if v is not None},
                              source=f"synthea-csv:breast_cancer_clone_groups/{pid}/{clone}"), gene)
