"""A MEDS dataset folder (``data/**/*.parquet`` shards, optional ``metadata/``) into the patient graph.

A folder is a MEDS dataset when it has ``metadata/dataset.json`` or parquet shards under
``data/`` (:func:`is_meds_dataset`); the whole dataset is one batch, so one transaction.

Two kinds of rows are read:

* **Rows written by** :mod:`graph.export_meds` (``node_type`` set): each is one node, rebuilt
  from its columns (id, times, code, system, display, value at full precision, unit,
  properties, encounter, conditions treated, source), so export then ingest gives the same nodes and edges
  (but ``NEXT``). Its derived rows
  (``GENDER//…``, ``MEDS_DEATH``: ``node_type`` null) are counted as skipped.
* **Any other MEDS rows** (another ETL's): ``MEDS_BIRTH``, ``MEDS_DEATH`` and ``GENDER//x`` give
  the subject's ``Patient`` node (birth date, end and ``deceased``, sex); an event's vocabulary
  prefix gives its node type (``LOINC`` a ``Lab``; ``RxNorm``, ``NDC``, ``ATC`` a
  ``Medication`` given once, undosed; ``SNOMED`` and ICD diagnosis codes a ``Condition``;
  ``CPT4``, ``ICD10PCS``, ``ICD9PROC``, ``HCPCS`` a ``Procedure``); any other code with a
  ``numeric_value`` is a ``Lab``. Lab values go through the canonical units of their LOINC code
  (unit from a ``unit`` column). Rows without a time or of another vocabulary without a value
  are counted as skipped by prefix. Node ids are hashes of the row.

Patient ids: ``metadata/patient_ids.parquet`` (written by non-de-identified exports) maps
``subject_id`` back to the patient id; otherwise the patient id is the ``subject_id`` in decimal.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core.errors import RecordError, SchemaError
from graph.ingest.builder import BatchBuilder, ParsedFile
from graph.ingest.fields import PULSE, content_id
from graph.meds_codes import BIRTH, DEATH, GENDER, SYSTEM_OF_PREFIX, TEXT_SUFFIX, split_code
from graph.schema import Node, NodeType, Prop, Rel
from graph.units import to_canonical

__all__ = ["is_meds_dataset", "parse_meds"]

_PATIENT_IDS = "metadata/patient_ids.parquet"
_CORE = ("subject_id", "time", "code")
_TYPE_BY_PREFIX: dict[str, tuple[NodeType, str]] = {
    **dict.fromkeys(("LOINC",), (NodeType.LAB, "Observation")),
    **dict.fromkeys(("RXNORM", "NDC", "ATC"), (NodeType.MEDICATION, "MedicationAdministration")),
    **dict.fromkeys(("SNOMED", "SNOMEDCT", "SNOMED-CT", "ICD9CM", "ICD9", "ICD10CM", "ICD-10-CM", "ICD10"),
                    (NodeType.CONDITION, "Condition")),
    **dict.fromkeys(("CPT4", "ICD10PCS", "ICD9PROC", "HCPCS"), (NodeType.PROCEDURE, "Procedure")),
}


def is_meds_dataset(folder: Path) -> bool:
    """Whether ``folder`` is laid out as a MEDS dataset."""
    data = folder / "data"
    return (folder / "metadata" / "dataset.json").is_file() or (data.is_dir() and any(data.rglob("*.parquet")))


def _utc(t: Any) -> datetime | None:
    if t is None:
        return None
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def _read(path: Path, root: Path) -> list[dict[str, Any]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise RecordError(f"cannot read parquet: {exc}", file=str(path)) from None
    missing = [c for c in _CORE if c not in table.column_names]
    if missing:
        raise RecordError(f"not a MEDS data shard: no column {missing[0]!r}", file=str(path))
    rel = str(path.relative_to(root))
    rows: list[dict[str, Any]] = table.to_pylist()
    for i, r in enumerate(rows):
        r["_label"] = f"{rel} row {i}"
    return rows


class _Dataset:
    def __init__(self, root: Path, descriptions: dict[str, str]) -> None:
        self.root = root
        self.descriptions = descriptions  # MEDS code -> description from metadata/codes.parquet
        self.b = BatchBuilder()
        self.resources: Counter[str] = Counter()
        self.skipped: Counter[str] = Counter()
        self.ids: dict[int, str] = {}
        self.facts: dict[str, dict[str, Any]] = {}  # patient -> birth/sex/death of foreign rows
        self.patients: set[str] = set()

    def error(self, r: dict[str, Any], reason: str, field: str | None = None) -> RecordError:
        return RecordError(reason, file=str(self.root), resource=r["_label"], field=field)

    def patient_id(self, r: dict[str, Any]) -> str:
        sid = r.get("subject_id")
        if not isinstance(sid, int):
            raise self.error(r, "subject_id is missing", "subject_id")
        return self.ids.get(sid, str(sid))

    # ---------------------------------------------------------------- rows we wrote
    def own(self, r: dict[str, Any], pid: str) -> None:
        try:
            ntype = NodeType(r["node_type"])
        except ValueError:
            raise self.error(r, f"unknown node type {r['node_type']!r}", "node_type") from None
        try:
            props = json.loads(r.get("properties") or "{}")
        except ValueError as exc:
            raise self.error(r, f"properties is not JSON: {exc}", "properties") from None
        if not isinstance(props, dict):
            raise self.error(r, "properties must be a JSON object", "properties")
        prefix, local = split_code(r["code"])
        code: str | None = local
        if ntype is NodeType.PATIENT or (r.get("system") is None and (prefix or "").endswith(TEXT_SUFFIX)):
            code = None
        value = r.get("value") if r.get("value") is not None else r.get("numeric_value")
        unit = r.get("unit")
        if ntype is NodeType.LAB and value is not None:
            value, unit = self.canonical(r, code, value, unit)
        nid = r.get("node_id") or f"{ntype.value}/meds-{content_id([pid, r['code'], str(r.get('time')), value])}"
        if ntype is NodeType.PATIENT:
            nid = f"Patient/{pid}"
        try:
            node = Node(id=nid, type=ntype, patient_id=pid, time=None if ntype is NodeType.PATIENT else _utc(r["time"]),
                        end=_utc(r.get("end")), code=code, system=r.get("system"), display=r.get("display"),
                        value=value, unit=unit, props=props, source=r.get("source") or f"meds:{nid}")
        except SchemaError as exc:
            raise self.error(r, exc.reason, exc.field) from None
        self.b.origin = (r["_label"], "subject_id")
        if ntype is NodeType.PATIENT:
            self.b.add(node)
            self.patients.add(pid)
        elif ntype is NodeType.VARIANT:
            gene = props.get(Prop.GENE)
            self.b.variant(node, gene if isinstance(gene, str) else None)
        elif ntype in (NodeType.GENE, NodeType.CONCEPT):
            raise self.error(r, f"{ntype.value} nodes are shared vocabulary, not a subject's events", "node_type")
        else:
            self.b.event(node, encounter_id=r.get("encounter_id"))
            for condition in r.get("treats") or ():
                self.b.link(node.id, Rel.TREATS, condition, pid)

    def canonical(self, r: dict[str, Any], code: str | None, value: float, unit: str | None) -> tuple[float, str | None]:
        if not math.isfinite(value):
            raise self.error(r, f"value must be a finite number, got {value!r}", "numeric_value")
        try:
            return to_canonical(code, float(value), unit)
        except RecordError as exc:
            raise self.error(r, exc.reason, "unit" if exc.field == "unit" else "numeric_value") from None

    # ---------------------------------------------------------------- any other MEDS rows
    def foreign(self, r: dict[str, Any], pid: str) -> None:
        code = r["code"]
        facts = self.facts.setdefault(pid, {})
        time = _utc(r.get("time"))
        if code in (BIRTH, DEATH) or code.upper().startswith(f"{GENDER}//"):
            if code == BIRTH:
                facts["birth"] = time
            elif code == DEATH:
                facts["death"] = time
            else:
                facts["sex"] = code.split("//", 1)[1].lower()
            self.skipped["MEDS row(birth, death, gender: properties of the Patient node)"] += 1
            return
        prefix = code.split("//", 1)[0].upper() if "//" in code else ""
        system, local = split_code(code)
        value, text = r.get("numeric_value"), r.get("text_value")
        kind = _TYPE_BY_PREFIX.get(prefix) or ((NodeType.LAB, "Observation") if value is not None else None)
        if kind is None or time is None:
            self.skipped[f"MEDS row({prefix or code} {'without a time' if time is None else 'not an event kind'})"] += 1
            return
        ntype, rtype = kind
        if system is not None and system.upper() == prefix and prefix not in SYSTEM_OF_PREFIX:
            system = prefix  # a vocabulary we have no URI for keeps its name as the system
        unit = r.get("unit")
        props: dict[str, Any] = {}
        if ntype is NodeType.LAB:
            if value is not None:
                value, unit = self.canonical(r, local if system == "http://loinc.org" else None, value, unit)
            elif isinstance(text, str):
                props["value_string"] = text
        else:
            value, unit = None, None
            if ntype is NodeType.MEDICATION:
                props[Prop.DOSING] = PULSE
        rid = content_id([pid, code, time.isoformat(), r.get("numeric_value"), text])
        self.b.origin = (r["_label"], "subject_id")
        try:
            node = Node(id=f"{rtype}/meds-{rid}", type=ntype, patient_id=pid, time=time, code=local, system=system,
                        display=self.descriptions.get(code), value=value, unit=unit, props=props,
                        source=f"meds:{rtype}/meds-{rid}")
        except SchemaError as exc:
            raise self.error(r, exc.reason, exc.field) from None
        self.b.event(node)

    def foreign_patients(self) -> None:
        for pid, facts in self.facts.items():
            if pid in self.patients:
                continue
            birth, death = facts.get("birth"), facts.get("death")
            props: dict[str, Any] = {Prop.BIRTH_DATE: birth.date().isoformat() if birth else None,
                                     Prop.BIRTH_YEAR: birth.year if birth else None, Prop.SEX: facts.get("sex"),
                                     Prop.DECEASED: True if death else None}
            self.b.origin = (f"subject {pid}", "subject_id")
            self.b.add(Node(id=f"Patient/{pid}", type=NodeType.PATIENT, patient_id=pid, end=death,
                            props={k: v for k, v in props.items() if v is not None}, source=f"meds:Patient/{pid}"))
            self.resources["MEDS subject"] += 1


def _descriptions(root: Path) -> dict[str, str]:
    path = root / "metadata" / "codes.parquet"
    if not path.is_file():
        return {}
    return {r["code"]: r["description"] for r in _read_plain(path, ("code", "description"))
            if isinstance(r.get("description"), str)}


def _read_plain(path: Path, columns: tuple[str, ...]) -> list[dict[str, Any]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path, columns=list(columns)).to_pylist()
    except (OSError, pa.ArrowException, KeyError) as exc:
        raise RecordError(f"cannot read parquet (columns {', '.join(columns)}): {exc}", file=str(path)) from None


def parse_meds(folder: str | Path) -> ParsedFile:
    """Parse one MEDS dataset folder into a single batch (see the module docstring)."""
    root = Path(folder)
    shards = sorted((root / "data").rglob("*.parquet")) if (root / "data").is_dir() else []
    if not shards:
        raise RecordError("a MEDS dataset needs parquet shards under data/", file=str(root))
    ds = _Dataset(root, _descriptions(root))
    if (root / _PATIENT_IDS).is_file():
        ds.ids = {int(r["subject_id"]): str(r["patient_id"])
                  for r in _read_plain(root / _PATIENT_IDS, ("subject_id", "patient_id"))}
    rows = [r for shard in shards for r in _read(shard, root)]
    # Patient rows first: a subject's own Patient node decides whether its GENDER/DEATH rows are derived.
    rows.sort(key=lambda r: r.get("node_type") != NodeType.PATIENT.value)
    for r in rows:
        pid = ds.patient_id(r)
        if not isinstance(r.get("code"), str) or not r["code"]:
            raise ds.error(r, "code is missing", "code")
        ds.resources["MEDS row"] += 1
        if r.get("node_type"):
            ds.own(r, pid)
        elif pid in ds.patients:
            ds.skipped["MEDS row(derived from the Patient row)"] += 1
        else:
            ds.foreign(r, pid)
    ds.foreign_patients()
    return ParsedFile(source=str(root), format="meds", batch=ds.b.batch(), resources=ds.resources,
                      skipped=ds.skipped, origins=ds.b.origins)
