"""Neo4j from the CLI: ``twin cypher``, ``twin export-neo4j`` and ``twin import-neo4j`` on a real server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli import app
from cli.neo4j_commands import parse_params
from graph.store.base import GraphStore, NodeQuery
from graph.store.sqlite import SQLiteStore
from tests.graph.store_samples import every_type_batch

pytestmark = pytest.mark.neo4j


def test_parse_params_reads_json_or_text() -> None:
    assert parse_params(["n=3", "code=2339-0", "ids=[\"a\"]", "s=it's"]) == {"n": 3, "code": "2339-0", "ids": ["a"], "s": "it's"}


def test_export_cypher_import(neo4j_store: GraphStore, tmp_path: Path) -> None:
    runner = CliRunner()
    src, back = tmp_path / "a.db", tmp_path / "b.db"
    with SQLiteStore(src) as s:
        s.write(every_type_batch())
    uri = neo4j_store.url
    out = runner.invoke(app, ["export-neo4j", "--from", f"sqlite:///{src}", "--to", uri, "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["copied"]["nodes"] == len(every_type_batch().nodes)

    out = runner.invoke(app, ["cypher", "MATCH (n:Lab) WHERE n.code = $c RETURN n.value AS v", "-p", "c=2339-0",
                              "--store", uri, "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["rows"] == [{"v": 101.5}]
    out = runner.invoke(app, ["cypher", "MATCH (n) DETACH DELETE n", "--store", uri, "--json"])
    assert out.exit_code == 1 and json.loads(out.output)["error"]["type"] == "QueryError"

    out = runner.invoke(app, ["import-neo4j", "--from", uri, "--to", f"sqlite:///{back}", "--json"])
    assert out.exit_code == 0, out.output
    with SQLiteStore(src) as a, SQLiteStore(back) as b:
        assert a.find_nodes(NodeQuery()) == b.find_nodes(NodeQuery()) and a.find_edges() == b.find_edges()
    out = runner.invoke(app, ["export-neo4j", "--from", f"sqlite:///{src}", "--to", f"sqlite:///{back}"])
    assert out.exit_code == 1  # --to must name Neo4j
