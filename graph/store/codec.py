"""Flat record form of nodes and edges shared by the stores.

Both SQLite rows and Neo4j properties hold scalars only, so ``props`` travels as a JSON
string and times as fixed-width ISO UTC strings (see :mod:`graph.timeutil`).
"""

from __future__ import annotations

import json
import math
from typing import Any, Protocol

from graph.schema import Edge, Node, NodeType, Rel
from graph.timeutil import from_iso, to_iso

__all__ = [
    "EdgeKey",
    "NODE_FIELDS",
    "Record",
    "RecordView",
    "edge_from_record",
    "edge_key",
    "edge_to_record",
    "node_from_record",
    "node_to_record",
]

NODE_FIELDS = ("id", "type", "patient_id", "time", "end", "code", "system", "display", "value", "unit", "props", "source")

#: A node or edge in record form (``NODE_FIELDS``, or ``src, rel, dst, patient_id, props``).
Record = dict[str, Any]
#: An edge's identity ``(src, rel, dst)``.
EdgeKey = tuple[str, str, str]


class RecordView(Protocol):
    """Read-only access to a record's fields by name: a :data:`Record`, an ``sqlite3.Row``, a
    ``neo4j.Record``. Read paths hand these on as they come, without copying into dicts."""

    def __getitem__(self, key: str, /) -> Any: ...


def _dumps(props: Any) -> str:
    return json.dumps(props, sort_keys=True, separators=(",", ":"), allow_nan=False, default=_default)


def _default(o: Any) -> Any:
    if hasattr(o, "tolist"):  # numpy arrays / scalars
        return o.tolist()
    if hasattr(o, "isoformat"):
        return o.isoformat()
    raise TypeError(f"property value of type {type(o).__name__} is not JSON-serialisable")


def node_to_record(n: Node) -> Record:
    """The node as a record; raises ``ValueError``/``TypeError`` for a non-finite value or non-JSON props."""
    value = None if n.value is None else float(n.value)  # every store reads values back as floats
    if value is not None and not math.isfinite(value):
        raise ValueError(f"node {n.id}: value must be finite, got {n.value!r}")
    return {
        "id": n.id,
        "type": n.type.value,
        "patient_id": n.patient_id,
        "time": to_iso(n.time),
        "end": to_iso(n.end),
        "code": n.code,
        "system": n.system,
        "display": n.display,
        "value": value,
        "unit": n.unit,
        "props": _dumps(dict(n.props)),
        "source": n.source,
    }


def node_from_record(r: RecordView) -> Node:
    """The node of a record (any mapping with the :data:`NODE_FIELDS`)."""
    return Node(
        id=r["id"],
        type=NodeType(r["type"]),
        patient_id=r["patient_id"],
        time=from_iso(r["time"]),
        end=from_iso(r["end"]),
        code=r["code"],
        system=r["system"],
        display=r["display"],
        value=r["value"],
        unit=r["unit"],
        props=json.loads(r["props"]) if r["props"] else {},
        source=r["source"],
    )


def edge_key(r: RecordView) -> EdgeKey:
    """The ``(src, rel, dst)`` identity of an edge record."""
    return (r["src"], r["rel"], r["dst"])


def edge_to_record(e: Edge) -> Record:
    """The edge as a record; raises ``TypeError`` for non-JSON props."""
    return {"src": e.src, "rel": e.rel.value, "dst": e.dst, "patient_id": e.patient_id, "props": _dumps(dict(e.props))}


def edge_from_record(r: RecordView) -> Edge:
    """The edge of a record (any mapping with ``src, rel, dst, patient_id, props``)."""
    return Edge(
        src=r["src"],
        rel=Rel(r["rel"]),
        dst=r["dst"],
        patient_id=r["patient_id"],
        props=json.loads(r["props"]) if r["props"] else {},
    )
