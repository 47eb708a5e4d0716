"""The Neo4j graph store: the same :class:`~graph.store.base.GraphStore` contract on a Neo4j 5 server.

Layout in the database:

* every node is ``(:Node:<Type> {id, type, patient_id, time, end, code, system, display,
  value, unit, props, source})`` with ``props`` a JSON string and times fixed-width ISO UTC
  strings (lexicographic order = time order), exactly the embedded store's record form;
* every edge is a relationship of its :class:`~graph.schema.Rel` type carrying
  ``{patient_id, props}``;
* an edge whose endpoint is not stored yet waits as a ``(:PendingEdge {key, src, rel, dst,
  patient_id, props})`` node and is promoted by the write that brings the endpoint.

Every :meth:`Neo4jStore.write` is ONE transaction of batched ``UNWIND $rows AS r MERGE ...``
statements (atomic and idempotent). Labels and relationship types only ever come from the
schema enums; every user value travels as a query parameter.
"""

from __future__ import annotations

import json
import os
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit, urlunsplit

import neo4j
from neo4j.exceptions import AuthError, ClientError, DriverError, Neo4jError, ServiceUnavailable

from core.errors import QueryError, StoreError
from graph.predicates import All, AnyOf, CarriesVariant, HasCondition, LabValue, Not, OnMedication, Predicate
from graph.schema import Edge, GraphBatch, Node, NodeType, Rel, gene_id
from graph.store.base import NodeQuery, StoreCounts, WriteStats
from graph.store.codec import NODE_FIELDS, edge_from_record, edge_to_record, node_from_record, node_to_record
from graph.timeutil import to_iso

__all__ = ["Neo4jStore"]

T = TypeVar("T")

_CHUNK = 2000  # rows per UNWIND statement; all chunks of one write share its transaction
_PROP_FIELDS = tuple(f for f in NODE_FIELDS if f != "id")
_CMP = {">": ">", ">=": ">=", "<": "<", "<=": "<=", "=": "="}

_SCHEMA_STATEMENTS = (
    "CREATE CONSTRAINT twin_node_id IF NOT EXISTS FOR (n:Node) REQUIRE n.id IS UNIQUE",
    "CREATE CONSTRAINT twin_pending_key IF NOT EXISTS FOR (p:PendingEdge) REQUIRE p.key IS UNIQUE",
    "CREATE INDEX twin_node_patient IF NOT EXISTS FOR (n:Node) ON (n.patient_id)",
    "CREATE INDEX twin_node_code IF NOT EXISTS FOR (n:Node) ON (n.code)",
    "CREATE INDEX twin_pending_src IF NOT EXISTS FOR (p:PendingEdge) ON (p.src)",
    "CREATE INDEX twin_pending_dst IF NOT EXISTS FOR (p:PendingEdge) ON (p.dst)",
    *(
        f"CREATE INDEX twin_rel_{rel.value.lower()}_patient IF NOT EXISTS FOR ()-[e:{rel.value}]-() ON (e.patient_id)"
        for rel in Rel
    ),
)

_RETURN_EDGE = "a.id AS src, type(e) AS rel, b.id AS dst, e.patient_id AS patient_id, e.props AS props"


def _chunks(items: list[T], n: int = _CHUNK) -> Iterator[list[T]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


def _node_record(n: Node) -> dict[str, Any]:
    r = node_to_record(n)
    if r["value"] is not None:
        r["value"] = float(r["value"])  # Neo4j keeps ints as ints; the embedded store reads REAL
    return r


def _node_row(r: dict[str, Any]) -> dict[str, Any]:
    """Record → UNWIND row: ``props`` is the map ``SET n += r.p`` applies (a None removes)."""
    return {"id": r["id"], "p": {k: r[k] for k in _PROP_FIELDS}}


def _pending_key(src: str, rel: str, dst: str) -> str:
    return json.dumps([src, rel, dst], separators=(",", ":"))


def _rel_union(rels: Iterable[Rel], where: str) -> str:
    """One ``UNION ALL`` statement over relationship types so each part can use its type's index."""
    return " UNION ALL ".join(
        f"MATCH (a:Node)-[e:{Rel(r).value}]->(b:Node) WHERE {where} RETURN {_RETURN_EDGE}" for r in rels
    )


class Neo4jStore:
    """:class:`~graph.store.base.GraphStore` on a Neo4j 5 server reached over Bolt.

    Example::

        store = Neo4jStore.from_url("bolt://127.0.0.1:7687")   # NEO4J_USER / NEO4J_PASSWORD
        store.write(GraphBatch(nodes=[...], edges=[...]))
        store.cohort(HasCondition("44054006"))

    Constraints and indexes are created (``IF NOT EXISTS``) on first use, once per process
    and database.
    """

    _schema_ready_for: set[tuple[str, str | None]] = set()  # (uri, database) whose schema exists
    _schema_lock = threading.Lock()

    def __init__(
        self,
        uri: str,
        *,
        auth: tuple[str, str] | None = None,
        database: str | None = None,
        url: str | None = None,
    ) -> None:
        self.uri = uri
        self.url = url or uri
        self.database = database
        try:
            self._driver = neo4j.GraphDatabase.driver(
                uri, auth=auth, connection_timeout=15.0, notifications_min_severity="OFF"
            )
        except (DriverError, ValueError) as exc:
            raise StoreError(f"cannot open Neo4j store {self.url}: {exc}") from exc

    @classmethod
    def from_url(cls, url: str) -> Neo4jStore:
        """Open ``bolt://[user:password@]host:port[/database]`` (also ``neo4j://``, ``+s`` variants).

        Credentials in the URL win; otherwise ``NEO4J_USER`` (default ``neo4j``) and
        ``NEO4J_PASSWORD`` are used; with neither, no authentication is sent.
        """
        parts = urlsplit(url)
        if parts.scheme not in ("bolt", "neo4j", "bolt+s", "neo4j+s", "bolt+ssc", "neo4j+ssc"):
            raise StoreError(f"not a Neo4j URL: {url!r} (expected bolt:// or neo4j://)")
        if not parts.hostname:
            raise StoreError(f"Neo4j URL {url!r} names no host")
        user = unquote(parts.username) if parts.username else os.environ.get("NEO4J_USER", "neo4j")
        password = unquote(parts.password) if parts.password else os.environ.get("NEO4J_PASSWORD")
        auth = (user, password) if password is not None else None
        netloc = parts.hostname + (f":{parts.port}" if parts.port else "")
        database = parts.path.strip("/") or os.environ.get("NEO4J_DATABASE") or None
        safe_url = urlunsplit((parts.scheme, netloc, parts.path, "", ""))  # never echo a password
        return cls(urlunsplit((parts.scheme, netloc, "", "", "")), auth=auth, database=database, url=safe_url)

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        self._driver.close()

    def __enter__(self) -> Neo4jStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Neo4jStore({self.url!r})"

    def _session(self, access: str = neo4j.WRITE_ACCESS) -> neo4j.Session:
        return self._driver.session(database=self.database, default_access_mode=access)

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        """Run ``fn`` translating driver errors to :class:`StoreError` (the one mapping boundary)."""
        try:
            return fn()
        except (ServiceUnavailable, AuthError) as exc:
            raise StoreError(f"Neo4j store {self.url} is unavailable for {what}: {exc}") from exc
        except Neo4jError as exc:
            raise StoreError(f"Neo4j store {self.url} failed to {what}: {exc.code}: {exc.message}") from exc
        except DriverError as exc:
            raise StoreError(f"Neo4j store {self.url} failed to {what}: {exc}") from exc

    def ensure_schema(self) -> None:
        """Create the uniqueness constraints and lookup indexes (once per process and database)."""
        key = (self.uri, self.database)
        if key in self._schema_ready_for:
            return
        with self._schema_lock:
            if key in self._schema_ready_for:
                return

            def create() -> None:
                with self._session() as s:
                    for stmt in _SCHEMA_STATEMENTS:
                        s.run(stmt).consume()
                    s.run("CALL db.awaitIndexes(300)").consume()

            self._call("create its constraints and indexes", create)
            self._schema_ready_for.add(key)

    def _read(self, what: str, query: str, **params: Any) -> list[neo4j.Record]:
        self.ensure_schema()

        def work(tx: neo4j.ManagedTransaction) -> list[neo4j.Record]:
            return list(tx.run(query, params))

        def run() -> list[neo4j.Record]:
            with self._session(neo4j.READ_ACCESS) as s:
                return s.execute_read(work)

        return self._call(what, run)

    # ------------------------------------------------------------------ writes
    def write(self, batch: GraphBatch) -> WriteStats:
        node_records = [_node_record(n) for n in batch.nodes]  # serialise before touching the database
        edge_records = [edge_to_record(e) for e in batch.edges]
        self.ensure_schema()

        def work(tx: neo4j.ManagedTransaction) -> WriteStats:
            stats = WriteStats()
            _write_nodes(tx, batch, node_records, stats)
            _write_edges(tx, batch, edge_records, stats)
            _promote_pending(tx, [r["id"] for r in node_records], stats)
            stats.edges_pending = tx.run("MATCH (p:PendingEdge) RETURN count(p) AS c").single(strict=True)["c"]
            return stats

        def run() -> WriteStats:
            with self._session() as s:
                return s.execute_write(work)

        return self._call("write a batch", run)

    # ------------------------------------------------------------------ reads
    def get_nodes(self, ids: Iterable[str]) -> list[Node]:
        out: list[Node] = []
        for chunk in _chunks(list(dict.fromkeys(ids))):
            rows = self._read("read nodes", "UNWIND $ids AS id MATCH (n:Node {id: id}) RETURN n", ids=chunk)
            out.extend(_to_node(r["n"]) for r in rows)
        return out

    def find_nodes(self, query: NodeQuery) -> list[Node]:
        where: list[str] = []
        params: dict[str, Any] = {}
        label = "Node"
        if query.types:
            type_names = [NodeType(t).value for t in dict.fromkeys(query.types)]
            if query.patient_id is None and not query.codes:
                label = "|".join(type_names)  # label scan; labels only from the enum
            else:  # let the patient_id / code index on :Node drive the lookup
                where.append("n.type IN $types")
                params["types"] = type_names
        if query.patient_id is not None:
            where.append("n.patient_id = $patient_id")
            params["patient_id"] = query.patient_id
        if query.codes:
            where.append("n.code IN $codes")
            params["codes"] = list(query.codes)
        if query.start is not None:
            where.append("n.time >= $start")
            params["start"] = to_iso(query.start)
        if query.end is not None:
            where.append("n.time <= $end")
            params["end"] = to_iso(query.end)
        if query.as_of is not None:
            where.append("(n.time IS NULL OR n.time <= $as_of)")
            params["as_of"] = to_iso(query.as_of)
        cypher = f"MATCH (n:{label})" + (f" WHERE {' AND '.join(where)}" if where else "")
        cypher += " RETURN n ORDER BY n.time IS NOT NULL, n.time, n.id"
        if query.limit is not None:
            cypher += " LIMIT $limit"
            params["limit"] = int(query.limit)
        return [_to_node(r["n"]).cut(query.as_of) for r in self._read("find nodes", cypher, **params)]

    def find_edges(
        self,
        *,
        patient_id: str | None = None,
        node_ids: Iterable[str] | None = None,
        rels: Iterable[Rel] | None = None,
    ) -> list[Edge]:
        rel_list = list(dict.fromkeys(Rel(r) for r in rels)) if rels is not None else None
        found: dict[tuple[str, str, str], Edge] = {}
        if node_ids is None:
            where = "e.patient_id = $patient_id" if patient_id is not None else "true"
            rows = self._read("find edges", _rel_union(rel_list or list(Rel), where), patient_id=patient_id)
        else:
            rows = []
            filt = ["($rels IS NULL OR type(e) IN $rels)", "($patient_id IS NULL OR e.patient_id = $patient_id)"]
            for chunk in _chunks(list(dict.fromkeys(node_ids))):
                cypher = (
                    "UNWIND $ids AS id MATCH (x:Node {id: id}) "
                    "CALL (x) { MATCH (x)-[e]->(b:Node) RETURN x AS a, e, b "
                    "UNION MATCH (a:Node)-[e]->(x) RETURN a, e, x AS b } "
                    f"WITH a, e, b WHERE {' AND '.join(filt)} RETURN {_RETURN_EDGE}"
                )
                rels_param = [r.value for r in rel_list] if rel_list is not None else None
                rows.extend(self._read("find edges", cypher, ids=chunk, rels=rels_param, patient_id=patient_id))
        for r in rows:
            e = edge_from_record(r)
            found[e.key] = e
        return [found[k] for k in sorted(found)]

    def pending_edges(self) -> list[Edge]:
        """Edges still waiting for an endpoint, sorted by ``(src, rel, dst)``."""
        rows = self._read(
            "read pending edges",
            "MATCH (p:PendingEdge) RETURN p.src AS src, p.rel AS rel, p.dst AS dst, "
            "p.patient_id AS patient_id, p.props AS props ORDER BY src, rel, dst",
        )
        return [edge_from_record(r) for r in rows]

    def patient_ids(self) -> list[str]:
        rows = self._read("list patients", "MATCH (n:Patient) RETURN n.patient_id AS pid ORDER BY pid")
        return [r["pid"] for r in rows]

    def counts(self) -> StoreCounts:
        # Per-label / per-type counts come from Neo4j's count store: no scan.
        node_q = " UNION ALL ".join(f"MATCH (n:{t.value}) RETURN '{t.value}' AS k, count(n) AS c" for t in NodeType)
        edge_q = " UNION ALL ".join(f"MATCH ()-[e:{r.value}]->() RETURN '{r.value}' AS k, count(e) AS c" for r in Rel)
        nodes = {r["k"]: r["c"] for r in self._read("count nodes", node_q) if r["c"]}
        edges = {r["k"]: r["c"] for r in self._read("count edges", edge_q) if r["c"]}
        pending = self._read("count pending edges", "MATCH (p:PendingEdge) RETURN count(p) AS c")[0]["c"]
        return StoreCounts(nodes=dict(sorted(nodes.items())), edges=dict(sorted(edges.items())), pending_edges=pending)

    def cohort(self, predicate: Predicate, as_of: datetime | None = None) -> list[str]:
        ids = self._cohort_ids(predicate, as_of)
        return sorted(i for i in ids if i is not None)

    def _cohort_ids(self, p: Predicate, as_of: datetime | None) -> set[str | None]:
        """Evaluate leaves as parameterised Cypher; combine with set algebra like the SQL store."""
        if isinstance(p, (All, AnyOf)):
            if not p.parts:
                raise QueryError(f"{type(p).__name__} needs at least one predicate")
            sets = [self._cohort_ids(x, as_of) for x in p.parts]
            return set.intersection(*sets) if isinstance(p, All) else set.union(*sets)
        if isinstance(p, Not):
            inner = self._cohort_ids(p.part, as_of)
            return set(self.patient_ids()) - inner
        cypher, params = _leaf_cypher(p, as_of)
        return {r["pid"] for r in self._read("evaluate a cohort predicate", cypher, **params)}

    # ------------------------------------------------------------------ maintenance
    def wipe(self) -> None:
        """Delete every node, edge and pending edge (constraints and indexes stay). For tests and copies."""
        self.ensure_schema()

        def run() -> None:
            with self._session() as s:
                s.run("MATCH (n) CALL (n) { DETACH DELETE n } IN TRANSACTIONS OF 10000 ROWS").consume()

        self._call("wipe the database", run)


def _to_node(n: Any) -> Node:
    return node_from_record({k: n.get(k) for k in NODE_FIELDS})


def _leaf_cypher(p: Predicate, as_of: datetime | None) -> tuple[str, dict[str, Any]]:
    """``RETURN DISTINCT ... AS pid`` for one leaf predicate; values only as parameters."""
    t = to_iso(as_of)
    params: dict[str, Any] = {"as_of": t}
    cut = " AND (n.time IS NULL OR n.time <= $as_of)" if t else ""
    if isinstance(p, HasCondition):
        sys_cut = " AND n.system = $system" if p.system else ""
        params.update(code=p.code, system=p.system)
        return f"MATCH (n:Node:Condition) WHERE n.code = $code{sys_cut}{cut} RETURN DISTINCT n.patient_id AS pid", params
    if isinstance(p, LabValue):
        try:
            op = _CMP[p.op]
        except (KeyError, TypeError):
            raise QueryError(f"LabValue.op must be one of {tuple(_CMP)}, got {p.op!r}") from None
        params.update(code=p.code, value=float(p.value))
        cypher = f"MATCH (n:Node:Lab) WHERE n.code = $code AND n.value {op} $value{cut}"
        if p.within_days is not None:
            if as_of is None:
                raise QueryError("LabValue.within_days needs an as_of time to count back from")
            cypher += " AND n.time >= $since"
            try:
                params["since"] = to_iso(as_of - timedelta(days=float(p.within_days)))
            except (OverflowError, ValueError):
                raise QueryError(f"LabValue.within_days={p.within_days!r} reaches outside the calendar from {as_of}") from None
        return cypher + " RETURN DISTINCT n.patient_id AS pid", params
    if isinstance(p, OnMedication):
        params["code"] = p.code
        if t is None:
            return "MATCH (n:Node:Medication) WHERE n.code = $code RETURN DISTINCT n.patient_id AS pid", params
        return (
            "MATCH (n:Node:Medication) WHERE n.code = $code AND n.time <= $as_of AND (n.end IS NULL OR n.end > $as_of) "
            "RETURN DISTINCT n.patient_id AS pid",
            params,
        )
    if isinstance(p, CarriesVariant):
        params["gene"] = gene_id(p.gene)
        return (
            f"MATCH (n:Variant)-[:IN_GENE]->(g:Node {{id: $gene}}) WHERE true{cut} RETURN DISTINCT n.patient_id AS pid",
            params,
        )
    raise QueryError(f"not a predicate: {p!r}")


# ---------------------------------------------------------------------- write steps (inside one tx)
def _node_types(tx: neo4j.ManagedTransaction, ids: list[str]) -> dict[str, NodeType]:
    out: dict[str, NodeType] = {}
    for chunk in _chunks(ids):
        for r in tx.run("UNWIND $ids AS id MATCH (n:Node {id: id}) RETURN n.id AS id, n.type AS type", ids=chunk):
            out[r["id"]] = NodeType(r["type"])
    return out


def _write_nodes(tx: neo4j.ManagedTransaction, batch: GraphBatch, records: list[dict[str, Any]], stats: WriteStats) -> None:
    if not records:
        return
    existing: dict[str, tuple[Any, ...]] = {}
    for chunk in _chunks(list(dict.fromkeys(r["id"] for r in records))):
        for r in tx.run("UNWIND $ids AS id MATCH (n:Node {id: id}) RETURN n", ids=chunk):
            n = r["n"]
            existing[n["id"]] = tuple(n.get(c) for c in _PROP_FIELDS)
    seen: set[str] = set()
    by_type: dict[str, list[dict[str, Any]]] = defaultdict(list)
    retyped: dict[str, list[str]] = defaultdict(list)
    for r in records:
        old = existing.get(r["id"])
        if old is None:
            if r["id"] not in seen:
                stats.nodes_added += 1
            seen.add(r["id"])
        elif old != tuple(r[c] for c in _PROP_FIELDS):
            stats.nodes_updated += 1
            if old[0] != r["type"]:
                retyped[old[0]].append(r["id"])
        by_type[r["type"]].append(_node_row(r))
    for old_type, ids in retyped.items():
        label = NodeType(old_type).value
        tx.run(f"UNWIND $ids AS id MATCH (n:Node {{id: id}}) REMOVE n:{label}", ids=ids).consume()
    for type_name, rows in by_type.items():
        label = NodeType(type_name).value  # label from the schema enum, never from data
        for chunk in _chunks(rows):
            tx.run(f"UNWIND $rows AS r MERGE (n:Node {{id: r.id}}) SET n:{label} SET n += r.p", rows=chunk).consume()


def _write_edge_rows(tx: neo4j.ManagedTransaction, rows: list[dict[str, Any]]) -> int:
    """MERGE ready edges grouped by relationship type; returns how many were created."""
    created = 0
    by_rel: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_rel[r["rel"]].append(r)
    for rel_name, group in by_rel.items():
        rel = Rel(rel_name).value  # relationship type from the schema enum, never from data
        for chunk in _chunks(group):
            summary = tx.run(
                f"UNWIND $rows AS r MATCH (a:Node {{id: r.src}}) MATCH (b:Node {{id: r.dst}}) "
                f"MERGE (a)-[e:{rel}]->(b) SET e.patient_id = r.patient_id, e.props = r.props",
                rows=chunk,
            ).consume()
            created += summary.counters.relationships_created
    return created


def _write_edges(tx: neo4j.ManagedTransaction, batch: GraphBatch, rows: list[dict[str, Any]], stats: WriteStats) -> None:
    if not rows:
        return
    batch_types = {n.id: n.type for n in batch.nodes}
    outside = sorted({x for e in batch.edges for x in (e.src, e.dst) if x not in batch_types})
    stored_types = _node_types(tx, outside)
    known = batch_types.keys() | stored_types.keys()
    # Schema check on every edge whose endpoint types are known (same rule as the embedded store).
    GraphBatch(
        nodes=list(batch.nodes) + [Node(id=i, type=t) for i, t in stored_types.items()],
        edges=[e for e in batch.edges if e.src in known and e.dst in known],
    ).validate()
    ready = [r for r in rows if r["src"] in known and r["dst"] in known]
    pending = [r for r in rows if not (r["src"] in known and r["dst"] in known)]
    stats.edges_added += _write_edge_rows(tx, ready)
    for chunk in _chunks([{**r, "key": _pending_key(r["src"], r["rel"], r["dst"])} for r in pending]):
        tx.run(
            "UNWIND $rows AS r MERGE (p:PendingEdge {key: r.key}) "
            "SET p.src = r.src, p.rel = r.rel, p.dst = r.dst, p.patient_id = r.patient_id, p.props = r.props",
            rows=chunk,
        ).consume()


def _promote_pending(tx: neo4j.ManagedTransaction, new_ids: list[str], stats: WriteStats) -> None:
    if not new_ids or tx.run("MATCH (p:PendingEdge) RETURN count(p) AS c").single(strict=True)["c"] == 0:
        return
    candidates: dict[str, dict[str, Any]] = {}
    for chunk in _chunks(list(dict.fromkeys(new_ids))):
        for side in ("src", "dst"):
            q = (
                f"UNWIND $ids AS id MATCH (p:PendingEdge) WHERE p.{side} = id "
                "RETURN p.key AS key, p.src AS src, p.rel AS rel, p.dst AS dst, p.patient_id AS patient_id, p.props AS props"
            )
            for r in tx.run(q, ids=chunk):
                candidates[r["key"]] = dict(r)
    if not candidates:
        return
    types = _node_types(tx, sorted({x for r in candidates.values() for x in (r["src"], r["dst"])}))
    ready = [r for r in candidates.values() if r["src"] in types and r["dst"] in types]
    if not ready:
        return
    GraphBatch(nodes=[Node(id=i, type=t) for i, t in types.items()], edges=[edge_from_record(r) for r in ready]).validate()
    stats.edges_added += _write_edge_rows(tx, ready)
    for chunk in _chunks([r["key"] for r in ready]):
        tx.run("UNWIND $keys AS k MATCH (p:PendingEdge {key: k}) DELETE p", keys=chunk).consume()
