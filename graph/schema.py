"""The patient knowledge-graph schema: node types, edge types and the two record classes.

This module is the one place the graph vocabulary is defined. Parsers, stores, exports,
the feature builder and the API all read it from here.

Conventions
-----------
* Every node has a stable ``id`` derived from its source record (``"Observation/<id>"``,
  ``"Concept/<system>|<code>"``), so ingesting the same record twice upserts, never duplicates.
* ``patient_id`` is the bare source id of the patient the node belongs to; vocabulary nodes
  shared by the cohort (``Concept``, ``Gene``) have ``patient_id=None``. A patient's own node
  is ``Patient/{patient_id}`` (:func:`patient_node_id`). Every patient-scoped node belongs to
  exactly one patient, which must exist; stores refuse writes that break this (see
  :mod:`graph.store.base`).
* ``time``/``end`` are timezone-aware UTC datetimes. A node with ``time=None`` is timeless
  (it exists at every ``as_of``), e.g. ``Patient``, ``Concept``, ``Gene``.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from core.errors import SchemaError

__all__ = [
    "Prop",
    "EDGE_TYPES",
    "EVENT_TYPES",
    "Edge",
    "EdgeType",
    "GraphBatch",
    "Node",
    "NodeType",
    "Rel",
    "concept_id",
    "gene_id",
    "has_edge_for",
    "patient_node_id",
]


class NodeType(enum.StrEnum):
    """The node types of a patient graph (see ``DESIGN.md``)."""

    PATIENT = "Patient"
    ENCOUNTER = "Encounter"
    LAB = "Lab"
    CONDITION = "Condition"
    MEDICATION = "Medication"
    PROCEDURE = "Procedure"
    IMAGE = "Image"
    VARIANT = "Variant"
    GENE = "Gene"
    CONCEPT = "Concept"

    def __str__(self) -> str:  # StrEnum's default too; kept explicit because the value is what stores persist
        return self.value


class Rel(enum.StrEnum):
    """Relationship names. Each is used only in the typed triples of :data:`EDGE_TYPES`."""

    HAS_ENCOUNTER = "HAS_ENCOUNTER"
    HAS_LAB = "HAS_LAB"
    HAS_CONDITION = "HAS_CONDITION"
    HAS_MEDICATION = "HAS_MEDICATION"
    HAS_PROCEDURE = "HAS_PROCEDURE"
    HAS_IMAGE = "HAS_IMAGE"
    RECORDED_IN = "RECORDED_IN"
    CODED_AS = "CODED_AS"
    TREATS = "TREATS"
    CARRIES = "CARRIES"
    IN_GENE = "IN_GENE"
    NEXT = "NEXT"

    def __str__(self) -> str:  # StrEnum's default too; kept explicit because the value is what stores persist
        return self.value


EdgeType = tuple[NodeType, Rel, NodeType]

#: Event node types: time-stamped, owned by one patient, linked to it by a ``HAS_*`` edge.
EVENT_TYPES: tuple[NodeType, ...] = (
    NodeType.LAB,
    NodeType.CONDITION,
    NodeType.MEDICATION,
    NodeType.PROCEDURE,
    NodeType.IMAGE,
)

_HAS: dict[NodeType, Rel] = {
    NodeType.ENCOUNTER: Rel.HAS_ENCOUNTER,
    NodeType.LAB: Rel.HAS_LAB,
    NodeType.CONDITION: Rel.HAS_CONDITION,
    NodeType.MEDICATION: Rel.HAS_MEDICATION,
    NodeType.PROCEDURE: Rel.HAS_PROCEDURE,
    NodeType.IMAGE: Rel.HAS_IMAGE,
}

#: Every allowed ``(source type, relationship, destination type)`` triple.
EDGE_TYPES: tuple[EdgeType, ...] = (
    *((NodeType.PATIENT, rel, t) for t, rel in _HAS.items()),
    *((t, Rel.RECORDED_IN, NodeType.ENCOUNTER) for t in EVENT_TYPES),
    *((t, Rel.CODED_AS, NodeType.CONCEPT) for t in (NodeType.ENCOUNTER, *EVENT_TYPES)),
    (NodeType.MEDICATION, Rel.TREATS, NodeType.CONDITION),
    (NodeType.PATIENT, Rel.CARRIES, NodeType.VARIANT),
    (NodeType.VARIANT, Rel.IN_GENE, NodeType.GENE),
    *((t, Rel.NEXT, t) for t in EVENT_TYPES),
)
_EDGE_SET = frozenset(EDGE_TYPES)


class Prop:
    """Names of the node properties the engine reads (parsers write them under exactly these names)."""

    BIRTH_DATE = "birth_date"  # Patient: ISO date (or year) of birth
    BIRTH_YEAR = "birth_year"  # Patient: year of birth, where the date is reduced
    SEX = "sex"  # Patient: administrative sex / gender as recorded
    DECEASED = "deceased"  # Patient: a death flag or time when no end time is known
    GENE = "gene"  # Variant: HGNC gene symbol
    FILE = "file"  # Image: the pixel file as referenced by the record
    FILE_PATH = "file_path"  # Image: that reference resolved to an absolute path at ingest
    DOSING = "dosing"  # Medication/Procedure: "pulse" (one administration at time) or "period" (daily over [time, end))
    DOSE_RECORDED = "dose_recorded"  # Medication/Procedure: the dose as written, {"value", "unit", "per_day"}


def has_edge_for(node_type: NodeType) -> Rel:
    """The ``Patient -> node`` relationship for an event/encounter node type."""
    try:
        return _HAS[node_type]
    except KeyError:
        raise SchemaError(f"node type {node_type} is not linked to a patient by a HAS_* edge") from None


def patient_node_id(patient_id: str) -> str:
    """Id of the ``Patient`` node of ``patient_id``."""
    return f"Patient/{patient_id}"


def concept_id(system: str | None, code: str) -> str:
    """Id of the shared vocabulary node for ``system|code``."""
    return f"Concept/{system or ''}|{code}"


def gene_id(symbol: str) -> str:
    """Id of the shared gene node for an HGNC symbol."""
    return f"Gene/{symbol.upper()}"


@dataclass(frozen=True, slots=True)
class Node:
    """One node of the patient graph.

    ``value``/``unit`` carry the numeric result of a ``Lab`` (in the canonical unit of its
    code) or the amount per day of a ``Medication`` or ``Procedure`` in the canonical unit of
    its dose kind (``graph.units.dose_quantity``; ``Prop.DOSING`` says whether it was one
    administration or therapy over a period); everything else typed lives in ``props``
    (JSON-serialisable values only).
    """

    id: str
    type: NodeType
    patient_id: str | None = None
    time: datetime | None = None
    end: datetime | None = None
    code: str | None = None
    system: str | None = None
    display: str | None = None
    value: float | None = None
    unit: str | None = None
    props: Mapping[str, Any] = field(default_factory=dict)
    source: str | None = None

    def __post_init__(self) -> None:
        if not self.id:
            raise SchemaError("a node needs a non-empty id", field="id")
        if not isinstance(self.type, NodeType):
            object.__setattr__(self, "type", NodeType(self.type))
        for name in ("time", "end"):
            t = getattr(self, name)
            if t is not None and t.tzinfo is None:
                raise SchemaError(f"must be timezone-aware (UTC), got {t!r}", resource=self.id, field=name)

    def exists_at(self, as_of: datetime | None) -> bool:
        """Whether the node is part of the graph as seen at ``as_of`` (``None`` = everything)."""
        return as_of is None or self.time is None or self.time <= as_of

    def cut(self, as_of: datetime | None) -> Node:
        """The node as known at ``as_of``: an ``end`` that lies after ``as_of`` is not yet known."""
        if as_of is not None and self.end is not None and self.end > as_of:
            return replace(self, end=None)
        return self


@dataclass(frozen=True, slots=True)
class Edge:
    """A typed, directed edge. Identity is ``(src, rel, dst)``."""

    src: str
    rel: Rel
    dst: str
    patient_id: str | None = None
    props: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.rel, Rel):
            object.__setattr__(self, "rel", Rel(self.rel))

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.src, self.rel.value, self.dst)


@dataclass(slots=True)
class GraphBatch:
    """Nodes and edges written together in one transaction (one bundle or file)."""

    nodes: list[Node] = field(default_factory=list)
    edges: list[Edge] = field(default_factory=list)

    def validate(self, known_ids: set[str] | None = None) -> None:
        """Check edge triples against the schema and that edge endpoints are known.

        ``known_ids`` are ids already in the store; endpoints must be in the batch or there.
        Raises :class:`~core.errors.SchemaError` naming the first offending edge.
        """
        types = {n.id: n.type for n in self.nodes}
        for e in self.edges:
            src_t, dst_t = types.get(e.src), types.get(e.dst)
            for end, t in ((e.src, src_t), (e.dst, dst_t)):
                if t is None and (known_ids is None or end not in known_ids):
                    raise SchemaError(f"endpoint {end!r} is not in the batch or the store", resource=f"edge {e.key}")
            if src_t is not None and dst_t is not None and (src_t, e.rel, dst_t) not in _EDGE_SET:
                raise SchemaError(f"({src_t}, {e.rel}, {dst_t}) is not a schema edge type", resource=f"edge {e.key}")
