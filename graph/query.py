"""The query layer: typed reads over any :class:`~graph.store.base.GraphStore`.

Every function takes ``as_of`` and then sees the graph exactly as it was known at that
time (see :mod:`graph.store.base`). Cohort predicates live in :mod:`graph.predicates`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from core.errors import QueryError
from graph.predicates import Predicate, check_limits
from graph.schema import Edge, Node, NodeType
from graph.store.base import GraphStore, NodeQuery

if TYPE_CHECKING:
    from graph.store.cypher import CypherResult

__all__ = ["Subgraph", "cohort", "find_nodes", "neighbourhood", "patient_graph", "read_cypher", "require_patient", "timeline"]


@dataclass
class Subgraph:
    """A set of nodes and the edges among them (what exports and the model consume), seen as
    of ``as_of`` (everything when ``None``)."""

    nodes: list[Node] = field(default_factory=list)
    edges: list[Edge] = field(default_factory=list)
    as_of: datetime | None = None

    def node_map(self) -> dict[str, Node]:
        return {n.id: n for n in self.nodes}

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for n in self.nodes:
            out[n.type.value] = out.get(n.type.value, 0) + 1
        return dict(sorted(out.items()))


def _visible_edges(edges: Iterable[Edge], ids: set[str]) -> list[Edge]:
    return [e for e in edges if e.src in ids and e.dst in ids]


def timeline(
    store: GraphStore,
    patient_id: str,
    *,
    as_of: datetime | None = None,
    types: Iterable[NodeType] | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
) -> list[Node]:
    """A patient's time-stamped records (encounters and events) in time order.

    Raises:
        QueryError: the store has no record of ``patient_id`` at all (a known patient with
            nothing in the window or before ``as_of`` gets an empty list).
    """
    require_patient(store, patient_id)
    wanted = tuple(types) if types is not None else (NodeType.ENCOUNTER, *_EVENTS)
    nodes = store.find_nodes(NodeQuery(patient_id=patient_id, types=wanted, as_of=as_of, start=start, end=end))
    return [n for n in nodes if n.time is not None]


_EVENTS = (NodeType.LAB, NodeType.CONDITION, NodeType.MEDICATION, NodeType.PROCEDURE, NodeType.IMAGE, NodeType.VARIANT)


def find_nodes(
    store: GraphStore,
    *,
    types: Iterable[NodeType] | None = None,
    codes: Iterable[str] | None = None,
    patient_id: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    as_of: datetime | None = None,
    limit: int | None = None,
) -> list[Node]:
    """Nodes by type / code / time window (inclusive), cut at ``as_of``."""
    if start is not None and end is not None and start > end:
        raise QueryError(f"time window is empty: start {start.isoformat()} is after end {end.isoformat()}")
    if limit is not None and limit < 1:
        raise QueryError(f"limit must be >= 1, got {limit}")
    return store.find_nodes(
        NodeQuery(
            patient_id=patient_id,
            types=tuple(NodeType(t) for t in types) if types is not None else None,
            codes=tuple(codes) if codes is not None else None,
            start=start,
            end=end,
            as_of=as_of,
            limit=limit,
        )
    )


def require_patient(store: GraphStore, patient_id: str) -> None:
    """Raise :class:`QueryError` ``no patient with id ...`` unless the store holds a record of
    ``patient_id`` (at any time; the API answers the same words with 404)."""
    if not store.find_nodes(NodeQuery(patient_id=patient_id, limit=1)):
        raise QueryError(f"no patient with id {patient_id!r}")


def patient_graph(store: GraphStore, patient_id: str, *, as_of: datetime | None = None) -> Subgraph:
    """A patient's whole graph as of ``as_of``: own nodes, linked vocabulary nodes, edges among them.

    Raises:
        QueryError: no patient with this id, or none of its records is visible as of ``as_of``.
    """
    own = store.find_nodes(NodeQuery(patient_id=patient_id, as_of=as_of))
    if not own:
        require_patient(store, patient_id)
        raise QueryError(f"no records for patient {patient_id!r} as of {as_of.isoformat() if as_of else '-'}")
    ids = {n.id for n in own}
    edges = store.find_edges(patient_id=patient_id)
    shared_ids = {x for e in edges for x in (e.src, e.dst) if x not in ids}
    shared = [n.cut(as_of) for n in store.get_nodes(shared_ids) if n.exists_at(as_of)]
    # Shared nodes must be reachable from a visible node of this patient.
    ids |= {n.id for n in shared}
    kept = _visible_edges(edges, ids)
    reachable = {x for e in kept for x in (e.src, e.dst)}
    nodes = own + sorted((n for n in shared if n.id in reachable), key=lambda n: n.id)
    return Subgraph(nodes=nodes, edges=kept, as_of=as_of)


def neighbourhood(store: GraphStore, node_id: str, *, hops: int = 1, as_of: datetime | None = None) -> Subgraph:
    """Nodes within ``hops`` edges of ``node_id`` (either direction) and the edges among them."""
    if hops < 1:
        raise QueryError(f"hops must be >= 1, got {hops}")
    start = [n for n in store.get_nodes([node_id]) if n.exists_at(as_of)]
    if not start:
        raise QueryError(f"node {node_id!r} does not exist" + (f" as of {as_of.isoformat()}" if as_of else ""))
    seen: dict[str, Node] = {start[0].id: start[0].cut(as_of)}
    frontier = {node_id}
    edges: dict[tuple[str, str, str], Edge] = {}
    for _ in range(hops):
        found = store.find_edges(node_ids=frontier)
        new_ids = {x for e in found for x in (e.src, e.dst)} - seen.keys()
        for n in store.get_nodes(new_ids):
            if n.exists_at(as_of):
                seen[n.id] = n.cut(as_of)
        edges.update({e.key: e for e in found})
        frontier = new_ids & seen.keys()
        if not frontier:
            break
    return Subgraph(nodes=list(seen.values()), edges=_visible_edges(edges.values(), set(seen)), as_of=as_of)


def cohort(store: GraphStore, predicate: Predicate, *, as_of: datetime | None = None) -> list[str]:
    """Sorted ids of the patients matching ``predicate`` as of ``as_of``.

    Raises:
        QueryError: the predicate is past :data:`~graph.predicates.MAX_PREDICATE_DEPTH` or
            :data:`~graph.predicates.MAX_PREDICATE_TERMS` (checked before the store sees it).
    """
    check_limits(predicate)
    return store.cohort(predicate, as_of)


def read_cypher(store: GraphStore, query: str, params: dict[str, Any] | None = None, *, timeout_s: float = 30.0,
                row_limit: int = 1000) -> CypherResult:
    """Run a user's read-only Cypher statement on a Neo4j store (see :mod:`graph.store.cypher`)."""
    from graph.store.cypher import run_read_cypher  # imports the neo4j driver: only when asked

    return run_read_cypher(store, query, params, timeout_s=timeout_s, row_limit=row_limit)
