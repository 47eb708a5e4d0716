"""A patient's records as seen at a time, read from a :class:`GraphStore`, plus node helpers.

:func:`load_records` is the only place the feature builder reads the store; with ``as_of``
set, the store itself hides everything after it. :meth:`PatientRecords.cut` applies the very
same rule in memory (``Node.exists_at`` + ``Node.cut``), so a training loop can read a
patient once and look at it from several origins without re-querying.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from core.errors import TwinError
from graph.schema import Edge, Node, NodeType, Prop, Rel
from graph.store.base import GraphStore, NodeQuery
from graph.timeutil import days_between, parse_fhir_time

__all__ = [
    "PatientRecords",
    "age_years",
    "daily_dose",
    "death_time",
    "gene_symbol",
    "image_path",
    "is_pulse",
    "load_records",
    "sex_of",
]


@dataclass(frozen=True)
class PatientRecords:
    """All nodes of one patient (and the edges among them) known at ``as_of`` (None = all)."""

    patient_id: str
    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]
    as_of: datetime | None = None
    genes: dict[str, str] | None = None  # variant id -> gene symbol from IN_GENE edges

    @property
    def patient(self) -> Node | None:
        return next((n for n in self.nodes if n.type is NodeType.PATIENT), None)

    def cut(self, as_of: datetime) -> PatientRecords:
        """The records as they were known at ``as_of`` (same semantics as a store read)."""
        if self.as_of is not None and as_of > self.as_of:
            raise TwinError(f"records of patient {self.patient_id} were read as of {self.as_of}; cannot cut later")
        nodes = tuple(n.cut(as_of) for n in self.nodes if n.exists_at(as_of))
        ids = {n.id for n in nodes}
        edges = tuple(e for e in self.edges if e.src in ids and e.dst in ids)
        genes = {k: v for k, v in (self.genes or {}).items() if k in ids}
        return PatientRecords(self.patient_id, nodes, edges, as_of, genes)


def load_records(store: GraphStore, patient_id: str, as_of: datetime | None = None) -> PatientRecords:
    """Read one patient's nodes and edges from ``store`` as of ``as_of``.

    Raises :class:`TwinError` when the store holds no node of this patient at that time.
    """
    nodes = tuple(store.find_nodes(NodeQuery(patient_id=patient_id, as_of=as_of)))
    if not nodes:
        raise TwinError(f"no records for patient {patient_id!r} in {store.url}" + (f" as of {as_of}" if as_of else ""))
    ids = {n.id for n in nodes}
    edges = tuple(e for e in store.find_edges(patient_id=patient_id) if e.src in ids and e.dst in ids)
    variant_ids = [n.id for n in nodes if n.type is NodeType.VARIANT]
    genes: dict[str, str] = {}
    if variant_ids:
        for e in store.find_edges(node_ids=variant_ids, rels=(Rel.IN_GENE,)):
            if e.src in ids:
                genes[e.src] = e.dst.split("/", 1)[-1]
    return PatientRecords(patient_id, nodes, edges, as_of, genes)


def _prop(node: Node, *keys: str) -> object:
    for k in keys:
        v = node.props.get(k)
        if v not in (None, ""):
            return v
    return None


def _time(value: object) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return parse_fhir_time(value)
        except ValueError:
            return None
    if isinstance(value, int) and 1800 < value < 2300:
        return parse_fhir_time(str(value))
    return None


def age_years(patient: Node, at: datetime | None) -> float | None:
    """Age in years at ``at`` (at the latest known time when None) from the Patient's birth date."""
    birth = _time(_prop(patient, Prop.BIRTH_DATE, Prop.BIRTH_YEAR))
    if birth is None:
        return None
    if at is None:
        at = death_time(patient) or datetime.now(birth.tzinfo)
    return days_between(birth, at) / 365.25


def sex_of(patient: Node) -> str | None:
    """``"male"``/``"female"``/other lower-cased, from the Patient's sex or gender property."""
    v = _prop(patient, Prop.SEX)
    if not isinstance(v, str):
        return None
    v = v.lower()
    return {"m": "male", "f": "female"}.get(v, v)


def death_time(patient: Node) -> datetime | None:
    """Time of death recorded on the Patient node (its ``end``, or a death-date property), if any."""
    if patient.end is not None:
        return patient.end
    return _time(_prop(patient, Prop.DECEASED))


def gene_symbol(variant: Node, genes: dict[str, str] | None = None) -> str | None:
    """Gene symbol of a Variant: from its IN_GENE edge when known, else its properties."""
    if genes and variant.id in genes:
        return genes[variant.id]
    v = _prop(variant, Prop.GENE)
    return v if isinstance(v, str) else None


def daily_dose(node: Node) -> float:
    """Amount per day of a Medication or Procedure in its canonical unit (the value ingest
    stores: dose x administrations per day); 1.0 if undosed.

    Records without a dose (common in Synthea, and most procedures) count as one unit per
    day, so "on the drug" or "had the procedure" still reaches the model as an input.
    """
    return float(node.value) if node.value is not None else 1.0


def is_pulse(node: Node) -> bool:
    """Whether a Medication or Procedure record is one administration at a time (a pulse that
    acts on its own day) rather than therapy over a period (``Prop.DOSING``, set at ingest).
    A procedure without that property is a pulse, a medication a period."""
    dosing = node.props.get(Prop.DOSING)
    if dosing in ("pulse", "period"):
        return dosing == "pulse"
    return node.type is NodeType.PROCEDURE


def image_path(image: Node) -> Path | None:
    """Absolute path of an Image node's pixel file, or None when it has none.

    ``props["file_path"]`` (absolute, as written by :mod:`graph.ingest`) is preferred;
    ``props["file"]`` may be absolute, or relative to the directory of the source file named in
    ``node.source``.
    """
    f = _prop(image, Prop.FILE_PATH, Prop.FILE)
    if not isinstance(f, str):
        return None
    p = Path(f)
    if p.is_absolute():
        return p
    if image.source:
        src = Path(str(image.source).split("#", 1)[0])
        for cand in (src.parent / p, src / p):
            if cand.exists():
                return cand
    return p.resolve()
