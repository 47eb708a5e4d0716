"""``twin cypher``, ``twin copy-store``, ``twin export-neo4j``, ``twin import-neo4j``: Neo4j from the CLI."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from cli.common import JsonOpt, StoreOpt, emit_json, fail
from core import QueryError, StoreError, TwinError
from graph import copy_store, open_store, read_cypher

__all__ = ["parse_params", "register"]

_NEO4J_SCHEMES = ("bolt://", "neo4j://", "bolt+s://", "neo4j+s://", "bolt+ssc://", "neo4j+ssc://")


def parse_params(items: list[str] | None) -> dict[str, Any]:
    """``["k=v", ...]`` → parameters; each value is read as JSON when it parses, else kept as text."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise QueryError(f"--param needs the form NAME=VALUE, got {item!r}")
        try:
            out[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            out[key.strip()] = raw
    return out


def cypher(
    query: Annotated[str, typer.Argument(help="A read-only Cypher statement, e.g. \"MATCH (n:Lab) RETURN n.code LIMIT 5\".")],
    param: Annotated[list[str] | None, typer.Option("--param", "-p", help="Query parameter NAME=VALUE (VALUE as JSON or text); repeatable.")] = None,
    limit: Annotated[int, typer.Option("--limit", help="Return at most this many rows.")] = 1000,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds before the statement is stopped.")] = 30.0,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Run a read-only Cypher statement on a Neo4j store (writes, admin and LOAD CSV are refused)."""
    try:
        params = parse_params(param)
        with open_store(store) as st:
            result = read_cypher(st, query, params, timeout_s=timeout, row_limit=limit)
    except TwinError as exc:
        fail(exc, as_json)
        return
    if as_json:
        emit_json({"ok": True, **result.to_dict()})
        return
    table = Table(*result.columns)
    for row in result.rows:
        table.add_row(*(v if isinstance(v, str) else json.dumps(v, default=str) for v in row.values()))
    console = Console()
    console.print(table)
    if result.truncated:
        console.print(f"[yellow]only the first {limit} rows are shown (--limit)[/yellow]")


def _copy(src_url: str, dst_url: str, merge: bool, batch_size: int, as_json: bool) -> None:
    try:
        with open_store(src_url) as src, open_store(dst_url) as dst:
            report = copy_store(src, dst, batch_size=batch_size, require_empty=not merge)
            counts = dst.counts()
    except TwinError as exc:
        fail(exc, as_json)
        return
    doc = {"ok": True, "src": src.url, "dst": dst.url, "copied": report.to_dict(),
           "dst_counts": {"nodes": counts.nodes, "edges": counts.edges, "pending_edges": counts.pending_edges}}
    if as_json:
        emit_json(doc)
    else:
        typer.echo(f"copied {report.nodes} nodes, {report.edges} edges, {report.pending_edges} pending edges "
                   f"from {src.url} to {dst.url}")


SrcOpt = Annotated[str, typer.Option("--src", "--from", help="Source store URL (sqlite:///path.db, bolt://host:port).")]
DstOpt = Annotated[str, typer.Option("--dst", "--to", help="Destination store URL; must be empty unless --merge.")]
MergeOpt = Annotated[bool, typer.Option("--merge", help="Allow a non-empty destination (upsert into it).")]
BatchOpt = Annotated[int, typer.Option("--batch-size", help="Nodes or edges per write transaction.")]


def copy_store_cmd(src: SrcOpt, dst: DstOpt, merge: MergeOpt = False, batch_size: BatchOpt = 5000,
                   as_json: JsonOpt = False) -> None:
    """Copy a whole graph store into another (nodes, edges, pending edges), losslessly."""
    _copy(src, dst, merge, batch_size, as_json)


def export_neo4j(src: SrcOpt, dst: DstOpt, merge: MergeOpt = False, batch_size: BatchOpt = 5000,
                 as_json: JsonOpt = False) -> None:
    """Move an embedded store into Neo4j (--to must be a bolt:// or neo4j:// URL)."""
    if not dst.startswith(_NEO4J_SCHEMES):
        fail(StoreError(f"--to must be a Neo4j URL (bolt:// or neo4j://), got {dst!r}"), as_json)
    _copy(src, dst, merge, batch_size, as_json)


def import_neo4j(src: SrcOpt, dst: DstOpt, merge: MergeOpt = False, batch_size: BatchOpt = 5000,
                 as_json: JsonOpt = False) -> None:
    """Move a Neo4j store back into an embedded one (--from must be a bolt:// or neo4j:// URL)."""
    if not src.startswith(_NEO4J_SCHEMES):
        fail(StoreError(f"--from must be a Neo4j URL (bolt:// or neo4j://), got {src!r}"), as_json)
    _copy(src, dst, merge, batch_size, as_json)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the ``twin`` app."""
    app.command("cypher")(cypher)
    app.command("copy-store")(copy_store_cmd)
    app.command("export-neo4j")(export_neo4j)
    app.command("import-neo4j")(import_neo4j)
