"""Copy a whole graph store into another (embedded ⇄ Neo4j), losslessly.

Everything a store holds moves: every node with all its fields, every edge with its
properties, and the edges still pending an endpoint. Patient nodes go first, since a
store accepts a patient's records only once the patient exists. Writes go in batches (one transaction
each) through the public :class:`~graph.store.base.GraphStore` interface, so any pair of
stores works; the copy is checked by comparing the two stores' counts at the end.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from core.errors import StoreError
from graph.schema import GraphBatch, NodeType
from graph.store.base import GraphStore, NodeQuery, chunks

__all__ = ["CopyReport", "copy_store"]

DEFAULT_BATCH = 5000


@dataclass(frozen=True)
class CopyReport:
    """What :func:`copy_store` moved."""

    nodes: int
    edges: int
    pending_edges: int

    def to_dict(self) -> dict[str, int]:
        return {"nodes": self.nodes, "edges": self.edges, "pending_edges": self.pending_edges}


def copy_store(
    src: GraphStore,
    dst: GraphStore,
    *,
    batch_size: int = DEFAULT_BATCH,
    require_empty: bool = True,
    on_progress: Callable[[str, int], None] | None = None,
) -> CopyReport:
    """Copy every node, edge and pending edge of ``src`` into ``dst``.

    With ``require_empty`` (default) ``dst`` must hold no nodes, so the result is an exact
    copy; otherwise the copy is merged in (upserts, as any write). ``on_progress(kind, n)``
    is called after each batch. Raises :class:`StoreError` when ``dst`` is not empty or the
    counts differ after the copy.
    """
    if batch_size < 1:
        raise StoreError(f"batch_size must be >= 1, got {batch_size}")
    if src is dst or (src.url == dst.url and src.url != "memory://"):  # every memory:// store is its own
        raise StoreError(f"source and destination are the same store ({src.url})")
    if require_empty and dst.counts().total_nodes:
        raise StoreError(f"destination store {dst.url} is not empty; copy into an empty store")

    nodes = sorted(src.find_nodes(NodeQuery()), key=lambda n: n.type is not NodeType.PATIENT)  # patients first
    for chunk in chunks(nodes, batch_size):
        dst.write(GraphBatch(nodes=chunk))
        if on_progress:
            on_progress("nodes", len(chunk))
    edges = src.find_edges()
    for chunk_e in chunks(edges, batch_size):
        dst.write(GraphBatch(edges=chunk_e))
        if on_progress:
            on_progress("edges", len(chunk_e))
    pending = src.pending_edges()
    for chunk_e in chunks(pending, batch_size):
        dst.write(GraphBatch(edges=chunk_e))
    if on_progress and pending:
        on_progress("pending_edges", len(pending))

    if require_empty:
        before, after = src.counts(), dst.counts()
        if before != after:
            raise StoreError(f"copy {src.url} -> {dst.url} is incomplete: source {before}, destination {after}")
    return CopyReport(nodes=len(nodes), edges=len(edges), pending_edges=len(pending))
