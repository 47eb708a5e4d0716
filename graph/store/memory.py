"""The in-memory reference store: the :class:`~graph.store.base.GraphStore` contract on plain dicts.

Nothing is persisted; ``open_store("memory://")`` gives a fresh, empty one. Records are kept
in the same flat form the other stores use (:mod:`graph.store.codec`), so values, times
(second precision) and ``props`` read back exactly as from SQLite or Neo4j, and predicates are
evaluated with the same NULL rules as SQL (a missing time, code or value matches no bound).
A write is all or nothing through an undo log that is replayed when the write fails.
Used by unit tests that need a store but not a database.
"""

from __future__ import annotations

import operator
import threading
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping, Sequence
from functools import partial
from typing import Any, TypeVar

from core.errors import StoreError
from graph.predicates import HasCondition, LabValue, OnMedication
from graph.schema import NodeType, Rel, gene_id
from graph.store.base import GraphStore, Leaf, NodeQuery, StoreCounts
from graph.store.codec import EdgeKey, Record, RecordView, edge_key
from graph.timeutil import to_iso

__all__ = ["MemoryStore"]

T = TypeVar("T")
K = TypeVar("K")

#: Undo actions of the running write, replayed in reverse when it fails.
UndoLog = list[Callable[[], object]]

_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    ">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le, "=": operator.eq,
}


class MemoryStore(GraphStore[UndoLog]):
    """:class:`~graph.store.base.GraphStore` in this process's memory (lost on close).

    Example::

        store = MemoryStore()
        store.write(GraphBatch(nodes=[...], edges=[...]))
        store.cohort(HasCondition("44054006"))
    """

    def __init__(self) -> None:
        self.url = "memory://"
        self._lock = threading.RLock()
        self._closed = False
        self._nodes: dict[str, Record] = {}
        self._edges: dict[EdgeKey, Record] = {}
        self._pending: dict[EdgeKey, Record] = {}
        self._edges_at: defaultdict[str, set[EdgeKey]] = defaultdict(set)  # node id -> keys of its edges

    # ------------------------------------------------------------------ lifecycle and transactions
    def _close(self) -> None:
        with self._lock:
            self._closed = True
            self._nodes, self._edges, self._pending = {}, {}, {}
            self._edges_at.clear()

    def _transaction(self, work: Callable[[UndoLog], T], *, write: bool) -> T:
        with self._lock:
            if self._closed:
                raise StoreError(f"store {self.url} is closed")
            undo: UndoLog = []
            try:
                return work(undo)
            except BaseException:
                for action in reversed(undo):
                    action()
                raise

    @staticmethod
    def _put(undo: UndoLog, table: MutableMapping[K, Record], key: K, value: Record) -> bool:
        """``table[key] = value``, undoable; whether ``key`` is new."""
        new = key not in table
        undo.append(partial(table.pop, key) if new else partial(table.__setitem__, key, table[key]))
        table[key] = value
        return new

    # ------------------------------------------------------------------ write hooks
    def _node_records(self, tx: UndoLog, ids: list[str]) -> dict[str, Record]:
        return {i: dict(self._nodes[i]) for i in ids if i in self._nodes}

    def _node_owners(self, tx: UndoLog, ids: list[str]) -> dict[str, tuple[NodeType, str | None]]:
        return {i: (NodeType(self._nodes[i]["type"]), self._nodes[i]["patient_id"]) for i in ids if i in self._nodes}

    def _put_nodes(self, tx: UndoLog, rows: list[Record], retyped: Mapping[str, str]) -> None:
        for r in rows:
            self._put(tx, self._nodes, r["id"], dict(r))

    def _put_edges(self, tx: UndoLog, rows: list[Record]) -> int:
        added = 0
        for r in rows:
            key = edge_key(r)
            if self._put(tx, self._edges, key, dict(r)):
                added += 1
                for end in {r["src"], r["dst"]}:
                    self._edges_at[end].add(key)
                    tx.append(partial(self._edges_at[end].discard, key))
        return added

    def _pending_count(self, tx: UndoLog) -> int:
        return len(self._pending)

    def _pending_touching(self, tx: UndoLog, ids: list[str]) -> list[Record]:
        wanted = set(ids)
        return [dict(r) for r in self._pending.values() if r["src"] in wanted or r["dst"] in wanted]

    def _put_pending(self, tx: UndoLog, rows: list[Record]) -> None:
        for r in rows:
            self._put(tx, self._pending, edge_key(r), dict(r))

    def _drop_pending(self, tx: UndoLog, keys: list[EdgeKey]) -> None:
        for key in keys:
            tx.append(partial(self._pending.__setitem__, key, self._pending.pop(key)))

    # ------------------------------------------------------------------ read hooks
    def _pending_records(self, tx: UndoLog) -> Sequence[RecordView]:
        return list(self._pending.values())

    def _find_nodes(self, tx: UndoLog, query: NodeQuery) -> Sequence[RecordView]:
        types = {t.value for t in query.types} if query.types else None
        codes = set(query.codes) if query.codes else None
        start, end, as_of = to_iso(query.start), to_iso(query.end), to_iso(query.as_of)

        def match(r: Record) -> bool:
            t = r["time"]
            return ((query.patient_id is None or r["patient_id"] == query.patient_id)
                    and (types is None or r["type"] in types)
                    and (codes is None or r["code"] in codes)
                    and (start is None or (t is not None and t >= start))
                    and (end is None or (t is not None and t <= end))
                    and (as_of is None or t is None or t <= as_of))

        found = sorted((r for r in self._nodes.values() if match(r)),
                       key=lambda r: (r["time"] is not None, r["time"] or "", r["id"]))
        return found[: query.limit]

    def _find_edges(self, tx: UndoLog, patient_id: str | None, node_ids: list[str] | None,
                    rels: list[str] | None) -> Sequence[RecordView]:
        keys: Iterable[EdgeKey] = (
            self._edges if node_ids is None else {k for i in node_ids for k in self._edges_at.get(i, ())}
        )
        wanted = set(rels) if rels else None
        return [r for r in (self._edges[k] for k in keys)
                if (patient_id is None or r["patient_id"] == patient_id) and (wanted is None or r["rel"] in wanted)]

    def _patient_ids(self, tx: UndoLog) -> list[str | None]:
        return [r["patient_id"] for r in self._nodes.values() if r["type"] == NodeType.PATIENT.value]

    def _counts(self, tx: UndoLog) -> StoreCounts:
        return StoreCounts(
            nodes=dict(Counter(r["type"] for r in self._nodes.values())),
            edges=dict(Counter(r["rel"] for r in self._edges.values())),
            pending_edges=len(self._pending),
        )

    def _leaf_patients(self, tx: UndoLog, leaf: Leaf, as_of: str | None, since: str | None) -> Iterator[str | None]:
        def visible(r: Record) -> bool:
            return as_of is None or r["time"] is None or r["time"] <= as_of

        if isinstance(leaf, HasCondition):
            return (r["patient_id"] for r in self._of_type(NodeType.CONDITION)
                    if r["code"] == leaf.code and (not leaf.system or r["system"] == leaf.system) and visible(r))
        if isinstance(leaf, LabValue):
            cmp, bound = _COMPARE[leaf.op], float(leaf.value)
            return (r["patient_id"] for r in self._of_type(NodeType.LAB)
                    if r["code"] == leaf.code and r["value"] is not None and cmp(r["value"], bound) and visible(r)
                    and (since is None or (r["time"] is not None and r["time"] >= since)))
        if isinstance(leaf, OnMedication):
            return (r["patient_id"] for r in self._of_type(NodeType.MEDICATION)
                    if r["code"] == leaf.code and (as_of is None or (
                        r["time"] is not None and r["time"] <= as_of and (r["end"] is None or r["end"] > as_of))))
        gene = gene_id(leaf.gene)  # CarriesVariant
        variants = (self._nodes.get(src) for src, rel, dst in self._edges_at.get(gene, ())
                    if rel == Rel.IN_GENE.value and dst == gene)
        return (v["patient_id"] for v in variants
                if v is not None and v["type"] == NodeType.VARIANT.value and visible(v))

    def _of_type(self, t: NodeType) -> Iterator[Record]:
        return (r for r in self._nodes.values() if r["type"] == t.value)
