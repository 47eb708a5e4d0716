"""The ``GraphStore`` protocol: the only storage interface the rest of the code depends on.

Assumptions every implementation honours (and ``tests/graph/test_store_contract.py``
checks on each):

* ``write`` is atomic: the whole batch is stored or, on any error, nothing is.
* ``write`` is idempotent: nodes upsert by ``id``, edges by ``(src, rel, dst)``; writing the
  same batch twice adds nothing.
* An edge whose endpoint is not (yet) stored is kept *pending* and becomes a real edge as
  soon as that endpoint is written (FHIR references may point at resources that arrive in a
  later file, e.g. NDJSON bulk exports split by resource type).
* Reads take an optional ``as_of``: nodes with ``time > as_of`` are invisible and an
  ``end`` after ``as_of`` reads as unknown (``None``), so nothing leaks from the future.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, runtime_checkable

from graph.predicates import Predicate
from graph.schema import Edge, GraphBatch, Node, NodeType, Rel

__all__ = ["GraphStore", "NodeQuery", "StoreCounts", "WriteStats"]


@dataclass(frozen=True)
class NodeQuery:
    """Filter for :meth:`GraphStore.find_nodes`; unset fields do not filter.

    ``start``/``end`` bound ``time`` inclusively; ``as_of`` cuts the graph (see module doc).
    Results are ordered by ``(time, id)`` with timeless nodes first.
    """

    patient_id: str | None = None
    types: tuple[NodeType, ...] | None = None
    codes: tuple[str, ...] | None = None
    start: datetime | None = None
    end: datetime | None = None
    as_of: datetime | None = None
    limit: int | None = None


@dataclass
class WriteStats:
    """What one ``write`` changed."""

    nodes_added: int = 0
    nodes_updated: int = 0
    edges_added: int = 0
    edges_pending: int = 0

    def __iadd__(self, other: WriteStats) -> WriteStats:
        self.nodes_added += other.nodes_added
        self.nodes_updated += other.nodes_updated
        self.edges_added += other.edges_added
        self.edges_pending = other.edges_pending
        return self


@dataclass
class StoreCounts:
    """Node counts by type and edge counts by relationship (plus pending edges)."""

    nodes: dict[str, int] = field(default_factory=dict)
    edges: dict[str, int] = field(default_factory=dict)
    pending_edges: int = 0

    @property
    def total_nodes(self) -> int:
        return sum(self.nodes.values())

    @property
    def total_edges(self) -> int:
        return sum(self.edges.values())


@runtime_checkable
class GraphStore(Protocol):
    """A durable, transactional store of patient graphs."""

    url: str

    def write(self, batch: GraphBatch) -> WriteStats:
        """Upsert a batch atomically (all or nothing) and idempotently."""
        ...

    def get_nodes(self, ids: Iterable[str]) -> list[Node]:
        """The stored nodes among ``ids`` (missing ids are left out), in no particular order."""
        ...

    def find_nodes(self, query: NodeQuery) -> list[Node]:
        """Nodes matching ``query`` ordered by ``(time, id)``."""
        ...

    def find_edges(
        self,
        *,
        patient_id: str | None = None,
        node_ids: Iterable[str] | None = None,
        rels: Iterable[Rel] | None = None,
    ) -> list[Edge]:
        """Edges of a patient and/or touching any of ``node_ids`` (either end)."""
        ...

    def patient_ids(self) -> list[str]:
        """Ids of all patients with a ``Patient`` node, sorted."""
        ...

    def cohort(self, predicate: Predicate, as_of: datetime | None = None) -> list[str]:
        """Sorted ids of the patients for whom ``predicate`` holds as of ``as_of``."""
        ...

    def counts(self) -> StoreCounts:
        """Node counts by type, edge counts by relationship, pending edges."""
        ...

    def close(self) -> None:
        """Release connections; the store object is unusable afterwards."""
        ...
