"""The embedded graph store: one SQLite file in WAL mode. The project's default; needs no server.

Nodes and edges are rows with a JSON ``props`` column; indexes cover the access paths the
query layer uses (``(patient_id, type, time)``, ``(type, code, time)``, edge endpoints).
Each write is one ``BEGIN IMMEDIATE`` transaction, so a failure (or a SIGKILL) mid-write
leaves the file exactly as before the batch; every ``sqlite3`` error surfaces as
:class:`~core.errors.StoreError` (through :class:`~graph.store.base.GraphStore`).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from graph.predicates import HasCondition, LabValue, OnMedication
from graph.schema import NodeType, gene_id
from graph.store.base import GraphStore, Leaf, NodeQuery, StoreCounts, chunks
from graph.store.codec import EdgeKey, Record, RecordView, edge_key
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
_EDGE_COLS = "(src, rel, dst, patient_id, props)"
_EDGE_VALUES = "(:src, :rel, :dst, :patient_id, :props)"
_CHUNK = 400  # ids per IN list: two lists plus filters stay below SQLite's bound-parameter limit

T = TypeVar("T")


def _marks(n: int) -> str:
    return ",".join("?" * n)


class SQLiteStore(GraphStore[sqlite3.Cursor]):
    """Embedded :class:`~graph.store.base.GraphStore` backed by one SQLite file.

    Example::

        store = SQLiteStore("twin.db")
        store.write(GraphBatch(nodes=[...], edges=[...]))
        store.find_nodes(NodeQuery(patient_id="p1", types=(NodeType.LAB,)))
    """

    #: ``OSError``: the file's folder cannot be created.
    backend_errors: ClassVar[tuple[type[Exception], ...]] = (sqlite3.Error, OSError)

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.url = f"sqlite:///{self.path}"
        self._lock = threading.RLock()
        with self._backend_errors("open"):
            if str(path) != ":memory:":
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=30.0)
            try:
                self._conn.row_factory = sqlite3.Row
                self._conn.execute("PRAGMA journal_mode=WAL")
                self._conn.execute("PRAGMA synchronous=NORMAL")
                self._conn.execute("PRAGMA foreign_keys=OFF")
                self._conn.executescript(_SCHEMA)
            except BaseException:
                self._conn.close()
                raise

    # ------------------------------------------------------------------ lifecycle and transactions
    def _close(self) -> None:
        with self._lock:
            self._conn.close()

    def _transaction(self, work: Callable[[sqlite3.Cursor], T], *, write: bool) -> T:
        with self._lock:
            cur = self._conn.cursor()
            cur.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                out = work(cur)
                cur.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:
                    cur.execute("ROLLBACK")
                raise
            return out

    # ------------------------------------------------------------------ write hooks
    def _node_records(self, tx: sqlite3.Cursor, ids: list[str]) -> dict[str, Record]:
        out: dict[str, Record] = {}
        for chunk in chunks(ids, _CHUNK):
            q = f"SELECT * FROM nodes WHERE id IN ({_marks(len(chunk))})"
            out.update((r["id"], dict(r)) for r in tx.execute(q, chunk))
        return out

    def _node_owners(self, tx: sqlite3.Cursor, ids: list[str]) -> dict[str, tuple[NodeType, str | None]]:
        out: dict[str, tuple[NodeType, str | None]] = {}
        for chunk in chunks(ids, _CHUNK):
            q = f"SELECT id, type, patient_id FROM nodes WHERE id IN ({_marks(len(chunk))})"
            out.update((r["id"], (NodeType(r["type"]), r["patient_id"])) for r in tx.execute(q, chunk))
        return out

    def _put_nodes(self, tx: sqlite3.Cursor, rows: list[Record], retyped: Mapping[str, str]) -> None:
        cols = [c for c in rows[0] if c != "id"]
        tx.executemany(f"INSERT INTO nodes {_NODE_COLS} VALUES {_NODE_VALUES} ON CONFLICT(id) DO UPDATE SET "
                       + ", ".join(f'"{c}"=excluded."{c}"' for c in cols), rows)

    def _put_edges(self, tx: sqlite3.Cursor, rows: list[Record]) -> int:
        tx.executemany("UPDATE edges SET patient_id=:patient_id, props=:props WHERE src=:src AND rel=:rel AND dst=:dst",
                       rows)
        tx.executemany(f"INSERT OR IGNORE INTO edges {_EDGE_COLS} VALUES {_EDGE_VALUES}", rows)
        return tx.rowcount  # summed over the rows: the ignored (existing) ones add 0

    def _pending_count(self, tx: sqlite3.Cursor) -> int:
        return tx.execute("SELECT count(*) FROM pending_edges").fetchone()[0]

    def _pending_touching(self, tx: sqlite3.Cursor, ids: list[str]) -> list[Record]:
        out: dict[EdgeKey, Record] = {}
        for chunk in chunks(ids, _CHUNK):
            q = f"SELECT * FROM pending_edges WHERE src IN ({_marks(len(chunk))}) OR dst IN ({_marks(len(chunk))})"
            out.update((edge_key(r), dict(r)) for r in tx.execute(q, chunk + chunk))
        return list(out.values())

    def _put_pending(self, tx: sqlite3.Cursor, rows: list[Record]) -> None:
        tx.executemany(f"INSERT INTO pending_edges {_EDGE_COLS} VALUES {_EDGE_VALUES} "
                       "ON CONFLICT(src, rel, dst) DO UPDATE SET patient_id=excluded.patient_id, props=excluded.props",
                       rows)

    def _drop_pending(self, tx: sqlite3.Cursor, keys: list[EdgeKey]) -> None:
        tx.executemany("DELETE FROM pending_edges WHERE src=? AND rel=? AND dst=?", keys)

    # ------------------------------------------------------------------ read hooks
    def _pending_records(self, tx: sqlite3.Cursor) -> Sequence[RecordView]:
        return tx.execute("SELECT * FROM pending_edges").fetchall()

    def _find_nodes(self, tx: sqlite3.Cursor, query: NodeQuery) -> Sequence[RecordView]:
        where, params = ["1=1"], list[Any]()
        if query.patient_id is not None:
            where.append("patient_id = ?")
            params.append(query.patient_id)
        if query.types:
            where.append(f"type IN ({_marks(len(query.types))})")
            params.extend(t.value for t in query.types)
        if query.codes:
            where.append(f"code IN ({_marks(len(query.codes))})")
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
        return tx.execute(sql, params).fetchall()

    def _find_edges(self, tx: sqlite3.Cursor, patient_id: str | None, node_ids: list[str] | None,
                    rels: list[str] | None) -> Sequence[RecordView]:
        base, params = ["1=1"], list[Any]()
        if patient_id is not None:
            base.append("patient_id = ?")
            params.append(patient_id)
        if rels:
            base.append(f"rel IN ({_marks(len(rels))})")
            params.extend(rels)
        if node_ids is None:
            return tx.execute(f"SELECT * FROM edges WHERE {' AND '.join(base)}", params).fetchall()
        out: list[RecordView] = []
        for chunk in chunks(node_ids, _CHUNK):
            marks = _marks(len(chunk))
            sql = f"SELECT * FROM edges WHERE {' AND '.join(base)} AND (src IN ({marks}) OR dst IN ({marks}))"
            out.extend(tx.execute(sql, params + chunk + chunk))
        return out

    def _patient_ids(self, tx: sqlite3.Cursor) -> list[str | None]:
        return [r[0] for r in tx.execute("SELECT patient_id FROM nodes WHERE type='Patient'")]

    def _counts(self, tx: sqlite3.Cursor) -> StoreCounts:
        return StoreCounts(
            nodes={r[0]: r[1] for r in tx.execute("SELECT type, count(*) FROM nodes GROUP BY type")},
            edges={r[0]: r[1] for r in tx.execute("SELECT rel, count(*) FROM edges GROUP BY rel")},
            pending_edges=self._pending_count(tx),
        )

    def _leaf_patients(self, tx: sqlite3.Cursor, leaf: Leaf, as_of: str | None, since: str | None) -> list[str | None]:
        sql, params = _leaf_sql(leaf, as_of, since)
        return [r[0] for r in tx.execute(sql, params)]


def _leaf_sql(p: Leaf, t: str | None, since: str | None) -> tuple[str, list[Any]]:
    """``SELECT DISTINCT patient_id ...`` for one leaf predicate; values only ever as parameters."""
    cut = " AND (time IS NULL OR time <= ?)" if t else ""
    cut_p = [t] if t else []
    if isinstance(p, HasCondition):
        sys_sql = " AND system = ?" if p.system else ""
        return (
            f"SELECT DISTINCT patient_id FROM nodes WHERE type='Condition' AND code = ?{sys_sql}{cut}",
            [p.code, *([p.system] if p.system else []), *cut_p],
        )
    if isinstance(p, LabValue):  # p.op is one of OPS (checked by GraphStore.cohort)
        sql = f"SELECT DISTINCT patient_id FROM nodes WHERE type='Lab' AND code = ? AND value {p.op} ?{cut}"
        if since is None:
            return sql, [p.code, float(p.value), *cut_p]
        return sql + " AND time >= ?", [p.code, float(p.value), *cut_p, since]
    if isinstance(p, OnMedication):
        if t is None:
            return "SELECT DISTINCT patient_id FROM nodes WHERE type='Medication' AND code = ?", [p.code]
        return (
            "SELECT DISTINCT patient_id FROM nodes WHERE type='Medication' AND code = ? AND time <= ? "
            'AND ("end" IS NULL OR "end" > ?)',
            [p.code, t, t],
        )
    vcut = " AND (v.time IS NULL OR v.time <= ?)" if t else ""  # CarriesVariant
    return (
        "SELECT DISTINCT v.patient_id FROM nodes v JOIN edges e ON e.src = v.id AND e.rel = 'IN_GENE' "
        f"WHERE v.type='Variant' AND e.dst = ?{vcut}",
        [gene_id(p.gene), *cut_p],
    )
