"""Flat record form of nodes and edges shared by the stores.

Both SQLite rows and Neo4j properties hold scalars only, so ``props`` travels as a JSON
string and times as fixed-width ISO UTC strings (see :mod:`graph.timeutil`).
"""

from __future__ import annotations

import json
import math
from typing import Any

from graph.schema import Edge, Node, NodeType, Rel
from graph.timeutil import from_iso, to_iso

__all__ = ["NODE_FIELDS", "edge_from_record", "edge_to_record", "node_from_record", "node_to_record"]

NODE_FIELDS = ("id", "type", "patient_id", "time", "end", "code", "system", "display", "value", "unit", "props", "source")


def _dumps(props: Any) -> str:
    return json.dumps(props, sort_keys=True, separators=(",", ":"), allow_nan=False, default=_default)


def _default(o: Any) -> Any:
    if hasattr(o, "tolist"):  # numpy arrays / scalars
        return o.tolist()
    if hasattr(o, "isoformat"):
        return o.isoformat()
    raise TypeError(f"property value of type {type(o).__name__} is not JSON-serialisable")


def node_to_record(n: Node) -> dict[str, Any]:
    if n.value is not None and not math.isfinite(n.value):
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
        "value": n.value,
        "unit": n.unit,
        "props": _dumps(dict(n.props)),
        "source": n.source,
    }


def node_from_record(r: Any) -> Node:
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


def edge_to_record(e: Edge) -> dict[str, Any]:
    return {"src": e.src, "rel": e.rel.value, "dst": e.dst, "patient_id": e.patient_id, "props": _dumps(dict(e.props))}


def edge_from_record(r: Any) -> Edge:
    return Edge(
        src=r["src"],
        rel=Rel(r["rel"]),
        dst=r["dst"],
        patient_id=r["patient_id"],
        props=json.loads(r["props"]) if r["props"] else {},
    )
