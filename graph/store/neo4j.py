"""The Neo4j graph store: the same :class:`~graph.store.base.GraphStore` contract on a Neo4j 5 server.

Layout in the database:

* every node is ``(:Node:<Type> {id, type, patient_id, time, end, code, system, display,
  value, unit, props, source})`` with ``props`` a JSON string and times fixed-width ISO UTC
  strings (lexicographic order = time order), exactly the embedded store's record form;
* every edge is a relationship of its :class:`~graph.schema.Rel` type carrying
  ``{patient_id, props}``;
* an edge whose endpoint is not stored yet waits as a ``(:PendingEdge {key, src, rel, dst,
  patient_id, props})`` node and is promoted by the write that brings the endpoint.

Every write is ONE transaction of batched ``UNWIND $rows AS r MERGE ...`` statements (atomic
and idempotent). Labels and relationship types only ever come from the schema enums; every
user value travels as a query parameter. Driver errors are translated in one place,
:meth:`Neo4jStore._map_error`, also for user Cypher (:meth:`Neo4jStore.run_read`).
"""

from __future__ import annotations

import json
import os
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, ClassVar, TypeVar
from urllib.parse import unquote, urlsplit, urlunsplit

import neo4j
from neo4j.exceptions import AuthError, ClientError, DriverError, Neo4jError, ServiceUnavailable, SessionExpired

from core.errors import QueryError, StoreError, TwinError
from graph.predicates import HasCondition, LabValue, OnMedication
from graph.schema import NodeType, Rel, gene_id
from graph.store.base import GraphStore, Leaf, NodeQuery, StoreCounts, chunks
from graph.store.codec import NODE_FIELDS, EdgeKey, Record, RecordView, edge_key
from graph.timeutil import to_iso

__all__ = ["Neo4jStore"]

T = TypeVar("T")

_CHUNK = 2000  # rows per UNWIND statement; all chunks of one write share its transaction
_PROP_FIELDS = tuple(f for f in NODE_FIELDS if f != "id")

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
_RETURN_PENDING = "p.src AS src, p.rel AS rel, p.dst AS dst, p.patient_id AS patient_id, p.props AS props"


def _node_row(r: Record) -> dict[str, Any]:
    """Record → UNWIND row: ``p`` is the map ``SET n += r.p`` applies (a None removes)."""
    return {"id": r["id"], "p": {k: r[k] for k in _PROP_FIELDS}}


def _pending_key(key: EdgeKey) -> str:
    return json.dumps(list(key), separators=(",", ":"))


def _rel_union(rels: Iterable[str], where: str) -> str:
    """One ``UNION ALL`` statement over relationship types so each part can use its type's index."""
    return " UNION ALL ".join(
        f"MATCH (a:Node)-[e:{Rel(r).value}]->(b:Node) WHERE {where} RETURN {_RETURN_EDGE}" for r in rels
    )


class Neo4jStore(GraphStore[neo4j.ManagedTransaction]):
    """:class:`~graph.store.base.GraphStore` on a Neo4j 5 server reached over Bolt.

    Example::

        store = Neo4jStore.from_url("bolt://127.0.0.1:7687")   # NEO4J_USER / NEO4J_PASSWORD
        store.write(GraphBatch(nodes=[...], edges=[...]))
        store.cohort(HasCondition("44054006"))

    Constraints and indexes are created (``IF NOT EXISTS``) on first use, once per process
    and database.
    """

    backend_errors: ClassVar[tuple[type[Exception], ...]] = (Neo4jError, DriverError)
    _schema_ready_for: ClassVar[set[tuple[str, str | None]]] = set()  # (uri, database) whose schema exists
    _schema_lock: ClassVar[threading.Lock] = threading.Lock()

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
        with self._backend_errors("open"):
            try:
                self._driver = neo4j.GraphDatabase.driver(
                    uri, auth=auth, connection_timeout=15.0, notifications_min_severity="OFF"
                )
            except ValueError as exc:  # the driver's verdict on a malformed URI or setting
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

    # ------------------------------------------------------------------ errors, sessions, transactions
    def _map_error(self, exc: Exception, what: str, *, user_statement: bool) -> TwinError:
        """The one translation of driver errors: an unreachable server or refused login is a
        :class:`StoreError`; what the server reports about a user's statement a :class:`QueryError`."""
        if isinstance(exc, (ServiceUnavailable, SessionExpired, AuthError)):
            return StoreError(f"Neo4j store {self.url} is unavailable for {what}: {exc}")
        if isinstance(exc, Neo4jError):
            if user_statement:
                verdict = "rejected by Neo4j" if isinstance(exc, ClientError) else "failed"
                return QueryError(f"Cypher {verdict} ({exc.code}): {exc.message}")
            return StoreError(f"Neo4j store {self.url} failed to {what}: {exc.code}: {exc.message}")
        return StoreError(f"Neo4j store {self.url} failed to {what}: {exc}")

    def _session(self, access: str) -> neo4j.Session:
        return self._driver.session(database=self.database, default_access_mode=access)

    def _close(self) -> None:
        self._driver.close()

    def _transaction(self, work: Callable[[neo4j.ManagedTransaction], T], *, write: bool) -> T:
        self.ensure_schema()
        with self._session(neo4j.WRITE_ACCESS if write else neo4j.READ_ACCESS) as s:
            return s.execute_write(work) if write else s.execute_read(work)

    # ------------------------------------------------------------------ Neo4j-only operations
    def ensure_schema(self) -> None:
        """Create the uniqueness constraints and lookup indexes (once per process and database)."""
        key = (self.uri, self.database)
        if key in self._schema_ready_for:
            return
        with self._schema_lock, self._backend_errors("create its constraints and indexes"):
            if key in self._schema_ready_for:
                return
            with self._session(neo4j.WRITE_ACCESS) as s:
                for stmt in _SCHEMA_STATEMENTS:
                    s.run(stmt).consume()
                s.run("CALL db.awaitIndexes(300)").consume()
            self._schema_ready_for.add(key)

    def run_read(self, work: Callable[[neo4j.ManagedTransaction], T], *, timeout_s: float) -> T:
        """Run a caller's unit of work (user Cypher) in one READ-access transaction of at most ``timeout_s``.

        Raises:
            QueryError: Neo4j rejected or failed the statement (syntax, timeout, a write refused).
            StoreError: the server cannot be reached.
        """
        with self._backend_errors("run Cypher", user_statement=True), self._session(neo4j.READ_ACCESS) as s:
            return s.execute_read(neo4j.unit_of_work(timeout=timeout_s)(work))

    def wipe(self) -> None:
        """Delete every node, edge and pending edge (constraints and indexes stay). For tests and copies."""
        self.ensure_schema()
        with self._backend_errors("wipe the database"), self._session(neo4j.WRITE_ACCESS) as s:
            s.run("MATCH (n) CALL (n) { DETACH DELETE n } IN TRANSACTIONS OF 10000 ROWS").consume()

    # ------------------------------------------------------------------ write hooks
    def _node_records(self, tx: neo4j.ManagedTransaction, ids: list[str]) -> dict[str, Record]:
        out: dict[str, Record] = {}
        for chunk in chunks(ids, _CHUNK):
            for r in tx.run("UNWIND $ids AS id MATCH (n:Node {id: id}) RETURN n", ids=chunk):
                rec = _record(r["n"])
                out[rec["id"]] = rec
        return out

    def _node_owners(self, tx: neo4j.ManagedTransaction, ids: list[str]) -> dict[str, tuple[NodeType, str | None]]:
        out: dict[str, tuple[NodeType, str | None]] = {}
        for chunk in chunks(ids, _CHUNK):
            for r in tx.run("UNWIND $ids AS id MATCH (n:Node {id: id}) "
                            "RETURN n.id AS id, n.type AS type, n.patient_id AS patient_id", ids=chunk):
                out[r["id"]] = (NodeType(r["type"]), r["patient_id"])
        return out

    def _put_nodes(self, tx: neo4j.ManagedTransaction, rows: list[Record], retyped: Mapping[str, str]) -> None:
        dropped: dict[str, list[str]] = defaultdict(list)
        for node_id, old_type in retyped.items():
            dropped[old_type].append(node_id)
        for old_type, ids in dropped.items():
            label = NodeType(old_type).value  # labels from the schema enum, never from data
            tx.run(f"UNWIND $ids AS id MATCH (n:Node {{id: id}}) REMOVE n:{label}", ids=ids).consume()
        by_type: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for r in rows:
            by_type[r["type"]].append(_node_row(r))
        for type_name, group in by_type.items():
            label = NodeType(type_name).value
            for chunk in chunks(group, _CHUNK):
                tx.run(f"UNWIND $rows AS r MERGE (n:Node {{id: r.id}}) SET n:{label} SET n += r.p",
                       rows=chunk).consume()

    def _put_edges(self, tx: neo4j.ManagedTransaction, rows: list[Record]) -> int:
        created = 0
        by_rel: dict[str, list[Record]] = defaultdict(list)
        for r in rows:
            by_rel[r["rel"]].append(r)
        for rel_name, group in by_rel.items():
            rel = Rel(rel_name).value  # relationship type from the schema enum, never from data
            for chunk in chunks(group, _CHUNK):
                summary = tx.run(
                    f"UNWIND $rows AS r MATCH (a:Node {{id: r.src}}) MATCH (b:Node {{id: r.dst}}) "
                    f"MERGE (a)-[e:{rel}]->(b) SET e.patient_id = r.patient_id, e.props = r.props",
                    rows=chunk,
                ).consume()
                created += summary.counters.relationships_created
        return created

    def _pending_count(self, tx: neo4j.ManagedTransaction) -> int:
        return tx.run("MATCH (p:PendingEdge) RETURN count(p) AS c").single(strict=True)["c"]

    def _pending_touching(self, tx: neo4j.ManagedTransaction, ids: list[str]) -> list[Record]:
        out: dict[EdgeKey, Record] = {}
        for chunk in chunks(ids, _CHUNK):
            for side in ("src", "dst"):
                q = f"UNWIND $ids AS id MATCH (p:PendingEdge) WHERE p.{side} = id RETURN {_RETURN_PENDING}"
                out.update((edge_key(r), dict(r)) for r in tx.run(q, ids=chunk))
        return list(out.values())

    def _put_pending(self, tx: neo4j.ManagedTransaction, rows: list[Record]) -> None:
        for chunk in chunks([{**r, "key": _pending_key(edge_key(r))} for r in rows], _CHUNK):
            tx.run(
                "UNWIND $rows AS r MERGE (p:PendingEdge {key: r.key}) "
                "SET p.src = r.src, p.rel = r.rel, p.dst = r.dst, p.patient_id = r.patient_id, p.props = r.props",
                rows=chunk,
            ).consume()

    def _drop_pending(self, tx: neo4j.ManagedTransaction, keys: list[EdgeKey]) -> None:
        for chunk in chunks([_pending_key(k) for k in keys], _CHUNK):
            tx.run("UNWIND $keys AS k MATCH (p:PendingEdge {key: k}) DELETE p", keys=chunk).consume()

    # ------------------------------------------------------------------ read hooks
    def _pending_records(self, tx: neo4j.ManagedTransaction) -> Sequence[RecordView]:
        return list(tx.run(f"MATCH (p:PendingEdge) RETURN {_RETURN_PENDING}"))

    def _find_nodes(self, tx: neo4j.ManagedTransaction, query: NodeQuery) -> Sequence[RecordView]:
        where: list[str] = []
        params: dict[str, Any] = {}
        label = "Node"
        if query.types:
            type_names = [t.value for t in query.types]
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
        return [_record(r["n"]) for r in tx.run(cypher, params)]  # absent properties read as None

    def _find_edges(self, tx: neo4j.ManagedTransaction, patient_id: str | None, node_ids: list[str] | None,
                    rels: list[str] | None) -> Sequence[RecordView]:
        if node_ids is None:
            where = "e.patient_id = $patient_id" if patient_id is not None else "true"
            return list(tx.run(_rel_union(rels or [r.value for r in Rel], where), patient_id=patient_id))
        cypher = (
            "UNWIND $ids AS id MATCH (x:Node {id: id}) "
            "CALL (x) { MATCH (x)-[e]->(b:Node) RETURN x AS a, e, b "
            "UNION MATCH (a:Node)-[e]->(x) RETURN a, e, x AS b } "
            "WITH a, e, b WHERE ($rels IS NULL OR type(e) IN $rels) "
            "AND ($patient_id IS NULL OR e.patient_id = $patient_id) "
            f"RETURN {_RETURN_EDGE}"
        )
        return [r for chunk in chunks(node_ids, _CHUNK)
                for r in tx.run(cypher, ids=chunk, rels=rels, patient_id=patient_id)]

    def _patient_ids(self, tx: neo4j.ManagedTransaction) -> list[str | None]:
        return [r["pid"] for r in tx.run("MATCH (n:Patient) RETURN n.patient_id AS pid")]

    def _counts(self, tx: neo4j.ManagedTransaction) -> StoreCounts:
        # Per-label / per-type counts come from Neo4j's count store: no scan.
        node_q = " UNION ALL ".join(f"MATCH (n:{t.value}) RETURN '{t.value}' AS k, count(n) AS c" for t in NodeType)
        edge_q = " UNION ALL ".join(f"MATCH ()-[e:{r.value}]->() RETURN '{r.value}' AS k, count(e) AS c" for r in Rel)
        return StoreCounts(
            nodes={r["k"]: r["c"] for r in tx.run(node_q) if r["c"]},
            edges={r["k"]: r["c"] for r in tx.run(edge_q) if r["c"]},
            pending_edges=self._pending_count(tx),
        )

    def _leaf_patients(self, tx: neo4j.ManagedTransaction, leaf: Leaf, as_of: str | None,
                       since: str | None) -> list[str | None]:
        cypher, params = _leaf_cypher(leaf, as_of, since)
        return [r["pid"] for r in tx.run(cypher, params)]


def _record(n: Any) -> Record:
    """A ``:Node``'s properties as a record (absent properties read as ``None``)."""
    return {k: n.get(k) for k in NODE_FIELDS}


def _leaf_cypher(p: Leaf, t: str | None, since: str | None) -> tuple[str, dict[str, Any]]:
    """``RETURN DISTINCT ... AS pid`` for one leaf predicate; values only as parameters."""
    params: dict[str, Any] = {"as_of": t}
    cut = " AND (n.time IS NULL OR n.time <= $as_of)" if t else ""
    if isinstance(p, HasCondition):
        sys_cut = " AND n.system = $system" if p.system else ""
        params.update(code=p.code, system=p.system)
        return f"MATCH (n:Node:Condition) WHERE n.code = $code{sys_cut}{cut} RETURN DISTINCT n.patient_id AS pid", params
    if isinstance(p, LabValue):  # p.op is one of OPS (checked by GraphStore.cohort)
        params.update(code=p.code, value=float(p.value), since=since)
        window = " AND n.time >= $since" if since is not None else ""
        return (f"MATCH (n:Node:Lab) WHERE n.code = $code AND n.value {p.op} $value{cut}{window} "
                "RETURN DISTINCT n.patient_id AS pid", params)
    if isinstance(p, OnMedication):
        params["code"] = p.code
        if t is None:
            return "MATCH (n:Node:Medication) WHERE n.code = $code RETURN DISTINCT n.patient_id AS pid", params
        return (
            "MATCH (n:Node:Medication) WHERE n.code = $code AND n.time <= $as_of AND (n.end IS NULL OR n.end > $as_of) "
            "RETURN DISTINCT n.patient_id AS pid",
            params,
        )
    params["gene"] = gene_id(p.gene)  # CarriesVariant
    return (
        f"MATCH (n:Variant)-[:IN_GENE]->(g:Node {{id: $gene}}) WHERE true{cut} RETURN DISTINCT n.patient_id AS pid",
        params,
    )
