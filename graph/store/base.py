"""``GraphStore``: the only storage interface the rest of the code depends on.

The public methods are implemented once, here; a backend (:class:`~graph.store.memory.MemoryStore`,
:class:`~graph.store.sqlite.SQLiteStore`, :class:`~graph.store.neo4j.Neo4jStore`) only
implements the small ``_``-prefixed hooks. Guarantees every store gives (and
``tests/graph/test_store_contract.py`` checks on each):

* ``write`` is atomic: the whole batch is stored or, on any error, nothing is.
* ``write`` is idempotent: nodes upsert by ``id``, edges by ``(src, rel, dst)``; writing the
  same batch twice adds nothing.
* Ownership: every patient-scoped node (``patient_id`` set) belongs to exactly one patient,
  fixed by its first write, and that patient exists: its ``Patient`` node
  (:func:`~graph.schema.patient_node_id`) is stored or in the same batch. A write that would
  give a stored node another patient, put two patients' nodes under one id, or add an edge
  joining two patients' records raises :class:`~core.errors.ConflictError`; a node of a
  patient that does not exist raises :class:`~core.errors.RecordError`. Both are raised
  before anything is written, inside the write's transaction, so the batch is refused whole.
* An edge whose endpoint is not (yet) stored is kept *pending* and becomes a real edge as
  soon as that endpoint is written (FHIR references may point at resources that arrive in a
  later file, e.g. NDJSON bulk exports split by resource type). Every real edge, promoted
  ones included, is checked against the schema.
* Reads take an optional ``as_of``: nodes with ``time > as_of`` are invisible and an
  ``end`` after ``as_of`` reads as unknown (``None``), so nothing leaks from the future.
* Errors of the backend's driver (``backend_errors``) are translated exactly once, by
  :meth:`GraphStore._backend_errors`, into :class:`~core.errors.StoreError` (or
  :class:`~core.errors.QueryError` for a caller's own statement); project errors pass through.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import ClassVar, Generic, Self, TypeVar

from core.errors import ConflictError, QueryError, RecordError, SchemaError, StoreError, TwinError
from graph.predicates import OPS, All, AnyOf, CarriesVariant, HasCondition, LabValue, Not, OnMedication, Predicate
from graph.schema import Edge, GraphBatch, Node, NodeType, Rel, patient_node_id
from graph.store.codec import (
    EdgeKey,
    Record,
    RecordView,
    edge_from_record,
    edge_key,
    edge_to_record,
    node_from_record,
    node_to_record,
)
from graph.timeutil import to_iso

__all__ = ["GraphStore", "Leaf", "NodeQuery", "StoreCounts", "WriteStats", "chunks"]

T = TypeVar("T")
TxT = TypeVar("TxT")

#: The predicates a backend evaluates itself; ``All``/``AnyOf``/``Not`` are combined here.
Leaf = HasCondition | LabValue | OnMedication | CarriesVariant


def chunks(items: Sequence[T], size: int) -> Iterator[list[T]]:
    """``items`` in consecutive lists of at most ``size`` (for parameter limits and batch sizes)."""
    for i in range(0, len(items), size):
        yield list(items[i : i + size])


@dataclass(frozen=True)
class NodeQuery:
    """Filter for :meth:`GraphStore.find_nodes`; unset (or empty) fields do not filter.

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


def _whose(patient_id: str | None) -> str:
    return f"patient {patient_id!r}" if patient_id is not None else "the shared vocabulary"


def _check_batch_owners(nodes: Sequence[Node]) -> None:
    """Refuse a batch that gives one id to two patients, or a Patient node under a foreign id."""
    owner: dict[str, str | None] = {}
    for n in nodes:
        if n.id in owner and owner[n.id] != n.patient_id:
            raise ConflictError(f"{n.id} is given to two different patients in one write", resource=n.id)
        owner[n.id] = n.patient_id
        if n.type is NodeType.PATIENT and (n.patient_id is None or n.id != patient_node_id(n.patient_id)):
            raise SchemaError(f"a Patient node's id must be 'Patient/<patient_id>', got patient_id {n.patient_id!r}",
                              resource=n.id, field="id")


def _check_patients_exist(batch_nodes: Sequence[Node], batch_heads: Mapping[str, tuple[NodeType, str | None]],
                          stored_heads: Mapping[str, tuple[NodeType, str | None]]) -> None:
    """Every patient-scoped node of the batch needs its Patient node, stored or in the batch."""
    for n in batch_nodes:
        if n.patient_id is None:
            continue
        pid = patient_node_id(n.patient_id)
        head = batch_heads.get(pid) or stored_heads.get(pid)
        if head is None or head[0] is not NodeType.PATIENT:
            raise RecordError(f"patient {n.patient_id!r} does not exist: store its Patient record first or "
                              f"in the same file", resource=n.id, field="patient_id")


def _check_edge_owner(r: Record, heads: Mapping[str, tuple[NodeType, str | None]]) -> None:
    """An edge and its two endpoints belong to at most one patient (shared nodes belong to none)."""
    src_owner, dst_owner = heads[r["src"]][1], heads[r["dst"]][1]
    owners = {p for p in (r["patient_id"], src_owner, dst_owner) if p is not None}
    if len(owners) > 1:
        who = r["patient_id"] if r["patient_id"] is not None else src_owner
        if dst_owner is not None and dst_owner != who:
            raise ConflictError(f"{r['src']} ({r['rel']}) references {r['dst']}, a record of another patient",
                                resource=r["src"])
        raise ConflictError(f"{r['dst']} is linked ({r['rel']}) from {r['src']}, a record of another patient",
                            resource=r["dst"])


class GraphStore(abc.ABC, Generic[TxT]):
    """A durable, transactional store of patient graphs.

    Subclasses set ``url`` and ``backend_errors`` and implement the hooks; ``TxT`` is what
    their :meth:`_transaction` hands to the hooks (a cursor, a driver transaction, an undo log).
    Records are the flat :mod:`graph.store.codec` form; read-only hooks may return any
    :class:`~graph.store.codec.RecordView` of them (no copying into dicts).
    """

    url: str
    #: Exceptions of the backend's driver; :meth:`_backend_errors` translates them.
    backend_errors: ClassVar[tuple[type[Exception], ...]] = ()

    # ------------------------------------------------------------------ public interface
    def write(self, batch: GraphBatch) -> WriteStats:
        """Upsert ``batch`` atomically (all or nothing) and idempotently.

        Raises:
            ConflictError: a node or edge would change or join another patient's records.
            RecordError: a node's patient does not exist (neither stored nor in the batch).
            SchemaError: an edge (new or promoted from pending) breaks the schema; a Patient
                node whose id is not ``Patient/{patient_id}``.
            ValueError, TypeError: a node or edge cannot be stored (NaN value, props not JSON).
            StoreError: the backend failed.
        """
        _check_batch_owners(batch.nodes)
        nodes = {n.id: node_to_record(n) for n in batch.nodes}  # serialise before touching the backend
        edges = {e.key: edge_to_record(e) for e in batch.edges}
        return self._run("write a batch", lambda tx: self._write(tx, batch.nodes, nodes, edges), write=True)

    def get_nodes(self, ids: Iterable[str]) -> list[Node]:
        """The stored nodes among ``ids`` (missing ids are left out), in no particular order."""
        wanted = list(dict.fromkeys(ids))
        if not wanted:
            return []
        found = self._run("read nodes", lambda tx: self._node_records(tx, wanted))
        return [node_from_record(r) for r in found.values()]

    def find_nodes(self, query: NodeQuery) -> list[Node]:
        """Nodes matching ``query`` ordered by ``(time, id)``, cut at ``query.as_of``."""
        if query.limit is not None and query.limit < 0:
            raise QueryError(f"limit must be >= 0, got {query.limit}")
        query = replace(
            query,
            types=tuple(dict.fromkeys(NodeType(t) for t in query.types)) if query.types else None,
            codes=tuple(query.codes) if query.codes else None,
        )
        rows = self._run("find nodes", lambda tx: self._find_nodes(tx, query))
        return [node_from_record(r).cut(query.as_of) for r in rows]

    def find_edges(
        self,
        *,
        patient_id: str | None = None,
        node_ids: Iterable[str] | None = None,
        rels: Iterable[Rel] | None = None,
    ) -> list[Edge]:
        """Edges of a patient and/or touching any of ``node_ids`` (either end), sorted by key.

        ``rels`` limits the relationship types (``None`` or empty: all of them).
        """
        rel_names = [r.value for r in dict.fromkeys(Rel(r) for r in rels)] if rels is not None else []
        ids = list(dict.fromkeys(node_ids)) if node_ids is not None else None
        if ids == []:
            return []
        rows = self._run("find edges", lambda tx: self._find_edges(tx, patient_id, ids, rel_names or None))
        return [edge_from_record(r) for r in sorted({edge_key(r): r for r in rows}.values(), key=edge_key)]

    def pending_edges(self) -> list[Edge]:
        """Edges still waiting for an endpoint, sorted by key (store copies move them too)."""
        rows = self._run("read pending edges", self._pending_records)
        return [edge_from_record(r) for r in sorted(rows, key=edge_key)]

    def patient_ids(self) -> list[str]:
        """Ids of all patients with a ``Patient`` node, sorted."""
        return sorted(p for p in self._run("list patients", self._patient_ids) if p is not None)

    def cohort(self, predicate: Predicate, as_of: datetime | None = None) -> list[str]:
        """Sorted ids of the patients for whom ``predicate`` holds as of ``as_of`` (see :mod:`graph.predicates`).

        Raises:
            QueryError: not a predicate, an empty ``All``/``AnyOf``, a bad ``LabValue``.
        """
        ids = self._run("evaluate a cohort predicate", lambda tx: self._patients_where(tx, predicate, as_of))
        return sorted(i for i in ids if i is not None)

    def counts(self) -> StoreCounts:
        """Node counts by type, edge counts by relationship, pending edges."""
        c = self._run("count nodes and edges", self._counts)
        return StoreCounts(nodes=dict(sorted(c.nodes.items())), edges=dict(sorted(c.edges.items())),
                           pending_edges=c.pending_edges)

    def close(self) -> None:
        """Release connections; the store object is unusable afterwards."""
        with self._backend_errors("close"):
            self._close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"

    # ------------------------------------------------------------------ the one error boundary
    @contextmanager
    def _backend_errors(self, what: str, *, user_statement: bool = False) -> Iterator[None]:
        """Translate the backend's errors raised inside into project errors (:meth:`_map_error`).

        ``what`` completes "failed to ..."; ``user_statement`` marks a caller's own statement
        (user Cypher), whose rejection by the backend is the caller's error, not the store's.
        """
        try:
            yield
        except self.backend_errors as exc:
            raise self._map_error(exc, what, user_statement=user_statement) from exc

    def _map_error(self, exc: Exception, what: str, *, user_statement: bool) -> TwinError:
        """The project error for backend error ``exc`` (override for finer distinctions)."""
        if user_statement:
            return QueryError(f"statement failed on {self.url}: {exc}")
        return StoreError(f"store {self.url} failed to {what}: {exc}")

    def _run(self, what: str, work: Callable[[TxT], T], *, write: bool = False) -> T:
        with self._backend_errors(what):
            return self._transaction(work, write=write)

    # ------------------------------------------------------------------ write and cohort logic, once
    def _write(
        self, tx: TxT, batch_nodes: Sequence[Node], nodes: dict[str, Record], edges: dict[EdgeKey, Record]
    ) -> WriteStats:
        stored = self._node_records(tx, list(nodes)) if nodes else {}
        for i, r in nodes.items():  # ownership: a stored node keeps its patient
            if i in stored and stored[i]["patient_id"] != r["patient_id"]:
                raise ConflictError(f"{i} is already a record of another patient; a record of "
                                    f"{_whose(r['patient_id'])} cannot reuse its id", resource=i)
        promotable = self._pending_touching(tx, list(nodes)) if nodes else []
        batch_heads = {n.id: (n.type, n.patient_id) for n in batch_nodes}
        patients = {p for _, p in batch_heads.values() if p is not None}
        outside = sorted(({x for r in (*edges.values(), *promotable) for x in (r["src"], r["dst"])}
                          | {patient_node_id(p) for p in patients}) - batch_heads.keys())
        stored_heads = self._node_owners(tx, outside) if outside else {}
        _check_patients_exist(batch_nodes, batch_heads, stored_heads)
        heads = stored_heads | batch_heads
        known = heads.keys()

        def ready(r: Record) -> bool:
            return r["src"] in known and r["dst"] in known

        promoted = [r for r in promotable if ready(r)]
        real = {edge_key(r): r for r in promoted} | {k: r for k, r in edges.items() if ready(r)}
        waiting = [r for r in edges.values() if not ready(r)]
        for r in real.values():  # an edge never joins two patients' records
            _check_edge_owner(r, heads)
        stored_types = {i: t for i, (t, _) in stored_heads.items()}
        if real:  # schema check of every edge that becomes real, endpoints typed by the batch or the store
            GraphBatch(
                nodes=[*(Node(id=i, type=t) for i, t in stored_types.items()), *batch_nodes],
                edges=[Edge(r["src"], Rel(r["rel"]), r["dst"]) for r in real.values()],
            ).validate()

        fresh = [r for i, r in nodes.items() if i not in stored]
        changed = {i: r for i, r in nodes.items() if i in stored and stored[i] != r}
        if fresh or changed:
            retyped = {i: stored[i]["type"] for i, r in changed.items() if stored[i]["type"] != r["type"]}
            self._put_nodes(tx, [*fresh, *changed.values()], retyped)
        stats = WriteStats(nodes_added=len(fresh), nodes_updated=len(changed))
        if real:
            stats.edges_added = self._put_edges(tx, list(real.values()))
        if promoted:
            self._drop_pending(tx, [edge_key(r) for r in promoted])
        if waiting:
            self._put_pending(tx, waiting)
        stats.edges_pending = self._pending_count(tx)
        return stats

    def _patients_where(self, tx: TxT, p: Predicate, as_of: datetime | None) -> set[str | None]:
        """Evaluate leaves in the backend; combine with set algebra (``Not`` = all patients minus)."""
        if isinstance(p, (All, AnyOf)):
            if not p.parts:
                raise QueryError(f"{type(p).__name__} needs at least one predicate")
            sets = [self._patients_where(tx, x, as_of) for x in p.parts]
            return set.intersection(*sets) if isinstance(p, All) else set.union(*sets)
        if isinstance(p, Not):
            return set(self._patient_ids(tx)) - self._patients_where(tx, p.part, as_of)
        if not isinstance(p, (HasCondition, LabValue, OnMedication, CarriesVariant)):
            raise QueryError(f"not a predicate: {p!r}")
        since = None
        if isinstance(p, LabValue):
            if p.op not in OPS:  # the backends put the operator into their query text
                raise QueryError(f"LabValue.op must be one of {OPS}, got {p.op!r}")
            if p.within_days is not None:
                if as_of is None:
                    raise QueryError("LabValue.within_days needs an as_of time to count back from")
                try:
                    since = to_iso(as_of - timedelta(days=float(p.within_days)))
                except (OverflowError, ValueError):
                    raise QueryError(
                        f"LabValue.within_days={p.within_days!r} reaches outside the calendar from {as_of}"
                    ) from None
        return set(self._leaf_patients(tx, p, to_iso(as_of), since))

    # ------------------------------------------------------------------ backend hooks
    @abc.abstractmethod
    def _transaction(self, work: Callable[[TxT], T], *, write: bool) -> T:
        """Run ``work`` in one backend transaction (read-only unless ``write``): committed when
        it returns, rolled back when it raises."""

    @abc.abstractmethod
    def _close(self) -> None:
        """Release the backend's connections."""

    @abc.abstractmethod
    def _node_records(self, tx: TxT, ids: list[str]) -> dict[str, Record]:
        """Records of the stored nodes among ``ids`` (distinct), by id."""

    @abc.abstractmethod
    def _node_owners(self, tx: TxT, ids: list[str]) -> dict[str, tuple[NodeType, str | None]]:
        """``(type, patient_id)`` of the stored nodes among ``ids`` (distinct), by id: the
        known-ids and ownership lookup of writes."""

    @abc.abstractmethod
    def _put_nodes(self, tx: TxT, rows: list[Record], retyped: Mapping[str, str]) -> None:
        """Insert or replace these node records (distinct ids); ``retyped`` maps the ids whose
        stored type changes to that old type."""

    @abc.abstractmethod
    def _put_edges(self, tx: TxT, rows: list[Record]) -> int:
        """Upsert these edge records (distinct keys, endpoints stored); returns how many are new."""

    @abc.abstractmethod
    def _pending_count(self, tx: TxT) -> int:
        """How many pending edges are stored."""

    @abc.abstractmethod
    def _pending_touching(self, tx: TxT, ids: list[str]) -> list[Record]:
        """Pending edge records with ``src`` or ``dst`` among ``ids`` (distinct)."""

    @abc.abstractmethod
    def _put_pending(self, tx: TxT, rows: list[Record]) -> None:
        """Upsert these edge records (distinct keys) as pending edges."""

    @abc.abstractmethod
    def _drop_pending(self, tx: TxT, keys: list[EdgeKey]) -> None:
        """Delete the pending edges with these ``(src, rel, dst)`` keys."""

    @abc.abstractmethod
    def _pending_records(self, tx: TxT) -> Sequence[RecordView]:
        """Every pending edge record."""

    @abc.abstractmethod
    def _find_nodes(self, tx: TxT, query: NodeQuery) -> Sequence[RecordView]:
        """Records of the nodes matching ``query`` (types and codes ``None`` or non-empty),
        ordered by ``(time is not null, time, id)``, at most ``query.limit``; no ``end`` cut."""

    @abc.abstractmethod
    def _find_edges(self, tx: TxT, patient_id: str | None, node_ids: list[str] | None,
                    rels: list[str] | None) -> Sequence[RecordView]:
        """Edge records matching every given filter (``node_ids``: either end; distinct, non-empty)."""

    @abc.abstractmethod
    def _patient_ids(self, tx: TxT) -> list[str | None]:
        """``patient_id`` of every ``Patient`` node."""

    @abc.abstractmethod
    def _counts(self, tx: TxT) -> StoreCounts:
        """Nodes by type and edges by relationship (non-zero ones), pending edges."""

    @abc.abstractmethod
    def _leaf_patients(self, tx: TxT, leaf: Leaf, as_of: str | None, since: str | None) -> Iterable[str | None]:
        """``patient_id`` of the nodes that make ``leaf`` hold (see :mod:`graph.predicates`).

        ``as_of`` is the cut as an ISO string; ``since`` (``LabValue`` with ``within_days``
        only) the earliest lab time. ``LabValue.op`` has been checked against ``OPS``.
        """
