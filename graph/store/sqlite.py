"""The embedded graph store: one SQLite file in WAL mode. The project's default; needs no server.

Nodes and edges are rows with a JSON ``props`` column; indexes cover the access paths the
query layer uses (``(patient_id, type, time)``, ``(type, code, time)``, edge endpoints).
Each :meth:`SQLiteStore.write` is one ``BEGIN IMMEDIATE`` transaction, so a failure (or a
SIGKILL) mid-write leaves the file exactly as before the batch.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from core.errors import QueryError, StoreError
from graph.predicates import All, AnyOf, CarriesVariant, HasCondition, LabValue, Not, OnMedication, Predicate
from graph.schema import Edge, GraphBatch, Node, NodeType, Rel, gene_id
from graph.store.base import NodeQuery, StoreCounts, WriteStats
from graph.store.codec import edge_from_record, edge_to_record, node_from_record, node_to_record
from graph.timeutil import to_iso

__all__ = ["SQLiteStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS nodes (
    id TEXT PRIMARY KEY,
    type TEXT NOT NULL,
    patient_id TEXT,
    time TEXT,
    "end" TEXT,
    code TEXT,
    system TEXT,
    display TEXT,
    value REAL,
    unit TEXT,
    props TEXT NOT NULL,
    source TEXT
);
CREATE INDEX IF NOT EXISTS nodes_patient_type_time ON nodes(patient_id, type, time);
CREATE INDEX IF NOT EXISTS nodes_type_code_time ON nodes(type, code, time);
CREATE TABLE IF NOT EXISTS edges (
    src TEXT NOT NULL,
    rel TEXT NOT NULL,
    dst TEXT NOT NULL,
    patient_id TEXT,
    props TEXT NOT NULL,
    PRIMARY KEY (src, rel, dst)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS edges_dst ON edges(dst, rel);
CREATE INDEX IF NOT EXISTS edges_patient ON edges(patient_id);
CREATE TABLE IF NOT EXISTS pending_edges (
    src TEXT NOT NULL,
    rel TEXT NOT NULL,
    dst TEXT NOT NULL,
    patient_id TEXT,
    props TEXT NOT NULL,
    PRIMARY KEY (src, rel, dst)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS pending_dst ON pending_edges(dst);
CREATE INDEX IF NOT EXISTS pending_src ON pending_edges(src);
"""

_NODE_COLS = '(id, type, patient_id, time, "end", code, system, display, value, unit, props, source)'
_NODE_VALUES = "(:id, :type, :patient_id, :time, :end, :code, :system, :display, :value, :unit, :props, :source)"
_CHUNK = 500  # stays below SQLite's bound-parameter limit


def _chunks(items: list[Any], n: int = _CHUNK) -> Iterator[list[Any]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


class SQLiteStore:
    """Embedded :class:`~graph.store.base.GraphStore` backed by one SQLite file.

    Example::

        store = SQLiteStore("twin.db")
        store.write(GraphBatch(nodes=[...], edges=[...]))
        store.find_nodes(NodeQuery(patient_id="p1", types=(NodeType.LAB,)))
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.url = f"sqlite:///{self.path}"
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=30.0)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open embedded store {self.path}: {exc}") from exc
        self._conn.row_factory = sqlite3.Row
        self._lock = threading.RLock()
        with self._lock:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute("PRAGMA foreign_keys=OFF")
            self._conn.executescript(_SCHEMA)

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> SQLiteStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SQLiteStore({str(self.path)!r})"

    # ------------------------------------------------------------------ writes
    def write(self, batch: GraphBatch) -> WriteStats:
        node_rows = [node_to_record(n) for n in batch.nodes]  # serialise before touching the file
        edge_rows = [edge_to_record(e) for e in batch.edges]
        stats = WriteStats()
        with self._lock:
            cur = self._conn.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                self._write_nodes(cur, node_rows, stats)
                batch_types = {n.id: n.type for n in batch.nodes}
                self._write_edges(cur, batch, edge_rows, batch_types, stats)
                self._promote_pending(cur, [r["id"] for r in node_rows], stats)
                stats.edges_pending = cur.execute("SELECT count(*) FROM pending_edges").fetchone()[0]
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise
        return stats

    def _write_nodes(self, cur: sqlite3.Cursor, rows: list[dict[str, Any]], stats: WriteStats) -> None:
        if not rows:
            return
        existing: dict[str, tuple] = {}
        cols = [c for c in rows[0] if c != "id"]
        for chunk in _chunks([r["id"] for r in rows]):
            q = f"SELECT * FROM nodes WHERE id IN ({','.join('?' * len(chunk))})"
            for r in cur.execute(q, chunk):
                existing[r["id"]] = tuple(r[c] for c in cols)
        new, changed = [], []
        seen: set[str] = set()
        for r in rows:
            old = existing.get(r["id"])
            if old is None:
                (changed if r["id"] in seen else new).append(r)
                seen.add(r["id"])
            elif old != tuple(r[c] for c in cols):
                changed.append(r)
        cur.executemany(f"INSERT INTO nodes {_NODE_COLS} VALUES {_NODE_VALUES} ON CONFLICT(id) DO UPDATE SET "
                        + ", ".join(f'"{c}"=excluded."{c}"' for c in cols), new + changed)
        stats.nodes_added += len(new)
        stats.nodes_updated += sum(1 for r in changed if r["id"] in existing)

    def _write_edges(
        self,
        cur: sqlite3.Cursor,
        batch: GraphBatch,
        rows: list[dict[str, Any]],
        batch_types: dict[str, NodeType],
        stats: WriteStats,
    ) -> None:
        if not rows:
            return
        outside = sorted({x for e in batch.edges for x in (e.src, e.dst) if x not in batch_types})
        stored_types: dict[str, NodeType] = {}
        for chunk in _chunks(outside):
            q = f"SELECT id, type FROM nodes WHERE id IN ({','.join('?' * len(chunk))})"
            stored_types.update({r["id"]: NodeType(r["type"]) for r in cur.execute(q, chunk)})
        # Schema check on every edge whose endpoint types are known.
        GraphBatch(
            nodes=list(batch.nodes) + [Node(id=i, type=t) for i, t in stored_types.items()],
            edges=[e for e in batch.edges if e.src in batch_types or e.src in stored_types
                   if e.dst in batch_types or e.dst in stored_types],
        ).validate()
        known = batch_types.keys() | stored_types.keys()
        ready = [r for r in rows if r["src"] in known and r["dst"] in known]
        pending = [r for r in rows if not (r["src"] in known and r["dst"] in known)]
        before = cur.execute("SELECT count(*) FROM edges").fetchone()[0]
        cur.executemany(
            "INSERT INTO edges (src, rel, dst, patient_id, props) VALUES (:src, :rel, :dst, :patient_id, :props) "
            "ON CONFLICT(src, rel, dst) DO UPDATE SET patient_id=excluded.patient_id, props=excluded.props",
            ready,
        )
        cur.executemany(
            "INSERT INTO pending_edges (src, rel, dst, patient_id, props) VALUES (:src, :rel, :dst, :patient_id, :props) "
            "ON CONFLICT(src, rel, dst) DO UPDATE SET patient_id=excluded.patient_id, props=excluded.props",
            pending,
        )
        stats.edges_added += cur.execute("SELECT count(*) FROM edges").fetchone()[0] - before

    def _promote_pending(self, cur: sqlite3.Cursor, new_ids: list[str], stats: WriteStats) -> None:
        if not new_ids or cur.execute("SELECT 1 FROM pending_edges LIMIT 1").fetchone() is None:
            return
        candidates: dict[tuple[str, str, str], sqlite3.Row] = {}
        for chunk in _chunks(new_ids):
            marks = ",".join("?" * len(chunk))
            q = f"SELECT * FROM pending_edges WHERE src IN ({marks}) OR dst IN ({marks})"
            for r in cur.execute(q, chunk + chunk):
                candidates[(r["src"], r["rel"], r["dst"])] = r
        if not candidates:
            return
        ends = sorted({x for k in candidates for x in (k[0], k[2])})
        types: dict[str, NodeType] = {}
        for chunk in _chunks(ends):
            q = f"SELECT id, type FROM nodes WHERE id IN ({','.join('?' * len(chunk))})"
            types.update({r["id"]: NodeType(r["type"]) for r in cur.execute(q, chunk)})
        ready = [r for k, r in candidates.items() if k[0] in types and k[2] in types]
        edges = [edge_from_record(r) for r in ready]
        GraphBatch(nodes=[Node(id=i, type=t) for i, t in types.items()], edges=edges).validate()
        before = cur.execute("SELECT count(*) FROM edges").fetchone()[0]
        cur.executemany(
            "INSERT OR REPLACE INTO edges (src, rel, dst, patient_id, props) VALUES (?, ?, ?, ?, ?)",
            [(r["src"], r["rel"], r["dst"], r["patient_id"], r["props"]) for r in ready],
        )
        cur.executemany(
            "DELETE FROM pending_edges WHERE src=? AND rel=? AND dst=?",
            [(r["src"], r["rel"], r["dst"]) for r in ready],
        )
        stats.edges_added += cur.execute("SELECT count(*) FROM edges").fetchone()[0] - before

    # ------------------------------------------------------------------ reads
    def _rows(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._conn.execute(sql, tuple(params)).fetchall()

    def get_nodes(self, ids: Iterable[str]) -> list[Node]:
        out: list[Node] = []
        for chunk in _chunks(list(dict.fromkeys(ids))):
            q = f"SELECT * FROM nodes WHERE id IN ({','.join('?' * len(chunk))})"
            out.extend(node_from_record(r) for r in self._rows(q, chunk))
        return out

    def find_nodes(self, query: NodeQuery) -> list[Node]:
        where, params = ["1=1"], []
        if query.patient_id is not None:
            where.append("patient_id = ?")
            params.append(query.patient_id)
        if query.types:
            where.append(f"type IN ({','.join('?' * len(query.types))})")
            params.extend(NodeType(t).value for t in query.types)
        if query.codes:
            where.append(f"code IN ({','.join('?' * len(query.codes))})")
            params.extend(query.codes)
        if query.start is not None:
            where.append("time >= ?")
            params.append(to_iso(query.start))
        if query.end is not None:
            where.append("time <= ?")
            params.append(to_iso(query.end))
        if query.as_of is not None:
            where.append("(time IS NULL OR time <= ?)")
            params.append(to_iso(query.as_of))
        sql = f"SELECT * FROM nodes WHERE {' AND '.join(where)} ORDER BY time IS NOT NULL, time, id"
        if query.limit is not None:
            sql += " LIMIT ?"
            params.append(int(query.limit))
        return [node_from_record(r).cut(query.as_of) for r in self._rows(sql, params)]

    def find_edges(
        self,
        *,
        patient_id: str | None = None,
        node_ids: Iterable[str] | None = None,
        rels: Iterable[Rel] | None = None,
    ) -> list[Edge]:
        rel_list = [Rel(r).value for r in rels] if rels is not None else None
        base, params = ["1=1"], []
        if patient_id is not None:
            base.append("patient_id = ?")
            params.append(patient_id)
        if rel_list:
            base.append(f"rel IN ({','.join('?' * len(rel_list))})")
            params.extend(rel_list)
        if node_ids is None:
            rows = self._rows(f"SELECT * FROM edges WHERE {' AND '.join(base)} ORDER BY src, rel, dst", params)
            return [edge_from_record(r) for r in rows]
        found: dict[tuple[str, str, str], Edge] = {}
        for chunk in _chunks(list(dict.fromkeys(node_ids)), 400):
            marks = ",".join("?" * len(chunk))
            sql = f"SELECT * FROM edges WHERE {' AND '.join(base)} AND (src IN ({marks}) OR dst IN ({marks}))"
            for r in self._rows(sql, params + chunk + chunk):
                e = edge_from_record(r)
                found[e.key] = e
        return [found[k] for k in sorted(found)]

    def pending_edges(self) -> list[Edge]:
        """Edges still waiting for an endpoint, sorted by ``(src, rel, dst)`` (used by store copies)."""
        return [edge_from_record(r) for r in self._rows("SELECT * FROM pending_edges ORDER BY src, rel, dst")]

    def patient_ids(self) -> list[str]:
        return [r[0] for r in self._rows("SELECT patient_id FROM nodes WHERE type='Patient' ORDER BY patient_id")]

    def counts(self) -> StoreCounts:
        nodes = {r[0]: r[1] for r in self._rows("SELECT type, count(*) FROM nodes GROUP BY type ORDER BY type")}
        edges = {r[0]: r[1] for r in self._rows("SELECT rel, count(*) FROM edges GROUP BY rel ORDER BY rel")}
        pending = self._rows("SELECT count(*) FROM pending_edges")[0][0]
        return StoreCounts(nodes=nodes, edges=edges, pending_edges=pending)

    def cohort(self, predicate: Predicate, as_of: datetime | None = None) -> list[str]:
        sql, params = _predicate_sql(predicate, as_of)
        rows = self._rows(f"SELECT DISTINCT patient_id FROM ({sql}) WHERE patient_id IS NOT NULL ORDER BY 1", params)
        return [r[0] for r in rows]


_CMP = {">": ">", ">=": ">=", "<": "<", "<=": "<=", "=": "="}


def _predicate_sql(p: Predicate, as_of: datetime | None) -> tuple[str, list[Any]]:
    """Translate a predicate to ``SELECT patient_id ...``; values only ever as parameters."""
    t = to_iso(as_of)
    cut = " AND (time IS NULL OR time <= ?)" if t else ""
    cut_p = [t] if t else []
    if isinstance(p, HasCondition):
        sys_sql = " AND system = ?" if p.system else ""
        return (
            f"SELECT patient_id FROM nodes WHERE type='Condition' AND code = ?{sys_sql}{cut}",
            [p.code, *([p.system] if p.system else []), *cut_p],
        )
    if isinstance(p, LabValue):
        sql = f"SELECT patient_id FROM nodes WHERE type='Lab' AND code = ? AND value {_CMP[p.op]} ?{cut}"
        params: list[Any] = [p.code, float(p.value), *cut_p]
        if p.within_days is not None:
            if as_of is None:
                raise QueryError("LabValue.within_days needs an as_of time to count back from")
            sql += " AND time >= ?"
            try:
                params.append(to_iso(as_of - timedelta(days=float(p.within_days))))
            except (OverflowError, ValueError):
                raise QueryError(f"LabValue.within_days={p.within_days!r} reaches outside the calendar from {as_of}") from None
        return sql, params
    if isinstance(p, OnMedication):
        if t is None:
            return "SELECT patient_id FROM nodes WHERE type='Medication' AND code = ?", [p.code]
        return (
            "SELECT patient_id FROM nodes WHERE type='Medication' AND code = ? AND time <= ? "
            'AND ("end" IS NULL OR "end" > ?)',
            [p.code, t, t],
        )
    if isinstance(p, CarriesVariant):
        vcut = " AND (v.time IS NULL OR v.time <= ?)" if t else ""
        return (
            "SELECT v.patient_id AS patient_id FROM nodes v JOIN edges e ON e.src = v.id AND e.rel = 'IN_GENE' "
            f"WHERE v.type='Variant' AND e.dst = ?{vcut}",
            [gene_id(p.gene), *cut_p],
        )
    if isinstance(p, (All, AnyOf)):
        if not p.parts:
            raise QueryError(f"{type(p).__name__} needs at least one predicate")
        parts = [_predicate_sql(x, as_of) for x in p.parts]
        op = " INTERSECT " if isinstance(p, All) else " UNION "
        return op.join(f"SELECT patient_id FROM ({s})" for s, _ in parts), [v for _, ps in parts for v in ps]
    if isinstance(p, Not):
        s, ps = _predicate_sql(p.part, as_of)
        return f"SELECT patient_id FROM nodes WHERE type='Patient' EXCEPT SELECT patient_id FROM ({s})", ps
    raise QueryError(f"not a predicate: {p!r}")
