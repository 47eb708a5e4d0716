"""Read-only Cypher pass-through for users (``twin cypher``, ``POST /v1/cypher``).

A statement is accepted only when all of these hold, so no user statement can change data,
schema or server settings, nor read local files or URLs:

1. Neo4j's own planner classifies it as read-only (``EXPLAIN`` → query type ``r``);
2. its plan calls no procedure outside the read-only allow list (no ``dbms.*``, no writes);
3. its plan loads no CSV;
4. it runs in a READ-access transaction (the server itself refuses writes there) with a
   timeout, and at most ``row_limit`` rows come back.

Rejections raise :class:`~core.errors.QueryError` saying why.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

import neo4j
from neo4j.graph import Node as GraphNode
from neo4j.graph import Path as GraphPath
from neo4j.graph import Relationship as GraphRelationship

from core.errors import QueryError
from graph.store.base import GraphStore

__all__ = ["CypherResult", "run_read_cypher"]

DEFAULT_TIMEOUT_S = 30.0
DEFAULT_ROW_LIMIT = 1000
MAX_ROW_LIMIT = 100_000
#: Procedures a read-only user statement may call (exact names, lower case).
READ_PROCEDURES = frozenset({"db.labels", "db.relationshiptypes", "db.propertykeys", "db.schema.visualization",
                             "db.schema.nodetypeproperties", "db.schema.reltypeproperties"})
_FORBIDDEN_OPERATORS = ("LoadCSV",)


@dataclass
class CypherResult:
    """Columns and JSON-ready rows of a read-only statement; ``truncated`` when rows were cut at the limit."""

    columns: list[str]
    rows: list[dict[str, Any]] = field(default_factory=list)
    truncated: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"columns": self.columns, "rows": self.rows, "truncated": self.truncated}


def run_read_cypher(
    store: GraphStore,
    query: str,
    params: dict[str, Any] | None = None,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    row_limit: int = DEFAULT_ROW_LIMIT,
) -> CypherResult:
    """Run a user's read-only Cypher ``query`` with ``params`` on a Neo4j ``store``.

    Raises:
        QueryError: not a Neo4j store, an invalid or non-read-only statement, a bad limit,
            a timeout or any error Neo4j reports about the statement.
        StoreError: the server cannot be reached.
    """
    from graph.store.neo4j import Neo4jStore

    if not isinstance(store, Neo4jStore):
        raise QueryError(f"Cypher needs a Neo4j store (bolt:// or neo4j://), not {store.url}")
    if not isinstance(query, str) or not query.strip():
        raise QueryError("the Cypher statement is empty")
    if not (isinstance(row_limit, int) and 1 <= row_limit <= MAX_ROW_LIMIT):
        raise QueryError(f"row_limit must be an integer in 1..{MAX_ROW_LIMIT}, got {row_limit!r}")
    if not (isinstance(timeout_s, (int, float)) and 0 < timeout_s <= 3600 and math.isfinite(timeout_s)):
        raise QueryError(f"timeout_s must be a number of seconds in (0, 3600], got {timeout_s!r}")
    params = dict(params or {})
    if not all(isinstance(k, str) for k in params):
        raise QueryError("Cypher parameter names must be strings")

    def work(tx: neo4j.ManagedTransaction) -> CypherResult:
        _check_read_only(tx.run("EXPLAIN " + query, params).consume())
        result = tx.run(query, params)
        out = CypherResult(columns=list(result.keys()))
        for record in result:
            if len(out.rows) == row_limit:
                out.truncated = True
                break
            out.rows.append({k: _jsonable(v) for k, v in record.items()})
        return out

    return store.run_read(work, timeout_s=timeout_s)  # the store translates driver errors


def _check_read_only(summary: neo4j.ResultSummary) -> None:
    if summary.query_type != "r":
        kinds = {"rw": "reads and writes", "w": "writes", "s": "is a schema, procedure or administration statement"}
        raise QueryError(f"only read-only Cypher is allowed; this statement {kinds.get(summary.query_type or '', 'is not a read')}")
    stack = [summary.plan] if summary.plan else []
    while stack:
        op = stack.pop()
        stack.extend(op.get("children", []))
        name = str(op.get("operatorType", "")).split("@")[0]
        if name in _FORBIDDEN_OPERATORS:
            raise QueryError("LOAD CSV is not allowed in read-only Cypher")
        if name.startswith("ProcedureCall"):
            details = str(op.get("args", {}).get("Details", ""))
            proc = details.split("(")[0].strip().strip("`").lower()
            if proc not in READ_PROCEDURES:
                raise QueryError(f"procedure {proc or details!r} is not allowed in read-only Cypher "
                                 f"(allowed: {', '.join(sorted(READ_PROCEDURES))})")


def _jsonable(v: Any) -> Any:
    """Neo4j values → JSON-ready Python values (nodes and relationships as property maps)."""
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, GraphNode):
        return {"labels": sorted(v.labels), "properties": {k: _jsonable(x) for k, x in v.items()}}
    if isinstance(v, GraphRelationship):
        return {"type": v.type, "start": v.start_node.get("id") if v.start_node else None,
                "end": v.end_node.get("id") if v.end_node else None,
                "properties": {k: _jsonable(x) for k, x in v.items()}}
    if isinstance(v, GraphPath):
        return {"nodes": [_jsonable(n) for n in v.nodes], "relationships": [_jsonable(r) for r in v.relationships]}
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, (datetime, date, time)) or hasattr(v, "iso_format"):
        return v.iso_format() if hasattr(v, "iso_format") else v.isoformat()
    if isinstance(v, timedelta):
        return v.total_seconds()
    if isinstance(v, bytes):
        return v.hex()
    return str(v)
