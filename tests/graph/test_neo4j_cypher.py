"""Neo4j: read-only Cypher pass-through and Cypher injection through every query parameter."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from core.errors import QueryError
from graph.predicates import All, AnyOf, CarriesVariant, HasCondition, LabValue, Not, OnMedication
from graph.schema import NodeType, Rel
from graph.store.base import GraphStore, NodeQuery
from graph.store.cypher import run_read_cypher
from tests.graph.store_samples import every_type_batch

pytestmark = pytest.mark.neo4j

INJECTIONS = [
    "x' OR 1=1 //",
    'x" OR true RETURN n //',
    "x'}) MATCH (m) DETACH DELETE m //",
    "x` MATCH (m) DETACH DELETE m //",
    "') WITH 1 AS x MATCH (m) DETACH DELETE m RETURN 1 AS pid //",
    "$code",
    "\\u0027 OR 1=1",
    "Patient/p1' OR n.id <> '",
]


@pytest.fixture()
def loaded(neo4j_store: GraphStore) -> GraphStore:
    neo4j_store.write(every_type_batch())
    return neo4j_store


def _snapshot(store: GraphStore) -> tuple[object, ...]:
    return store.counts(), store.find_nodes(NodeQuery()), store.find_edges()


@pytest.mark.parametrize("evil", INJECTIONS)
def test_injection_through_every_predicate_field_is_inert(loaded: GraphStore, evil: str) -> None:
    before = _snapshot(loaded)
    as_of = datetime(2030, 1, 1, tzinfo=UTC)
    preds = [
        HasCondition(evil), HasCondition("44054006", system=evil), LabValue(evil, ">", 0.0),
        LabValue(evil, ">", 0.0, within_days=365), OnMedication(evil), CarriesVariant(evil),
        All((HasCondition(evil), OnMedication(evil))), AnyOf((CarriesVariant(evil), LabValue(evil, "<", 1e9))),
    ]
    for p in preds:
        assert loaded.cohort(p, as_of=as_of) == []
        if not (isinstance(p, LabValue) and p.within_days):
            assert loaded.cohort(p) == []
    assert loaded.cohort(Not(HasCondition(evil))) == ["p1"]  # the complement is everyone, not more
    assert _snapshot(loaded) == before


@pytest.mark.parametrize("evil", INJECTIONS)
def test_injection_through_node_and_edge_lookups_is_inert(loaded: GraphStore, evil: str) -> None:
    before = _snapshot(loaded)
    assert loaded.find_nodes(NodeQuery(patient_id=evil)) == []
    assert loaded.find_nodes(NodeQuery(codes=(evil,), types=(NodeType.LAB,))) == []
    assert loaded.get_nodes([evil]) == []
    assert loaded.find_edges(patient_id=evil) == []
    assert loaded.find_edges(node_ids=[evil]) == []
    assert _snapshot(loaded) == before


def test_injection_through_enum_fields_and_operator_is_refused(loaded: GraphStore) -> None:
    before = _snapshot(loaded)
    with pytest.raises(ValueError):
        loaded.find_nodes(NodeQuery(types=("Lab) DETACH DELETE n //",)))  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        loaded.find_edges(rels=["HAS_LAB]->() DETACH DELETE e //"])  # type: ignore[list-item]
    with pytest.raises(QueryError):
        LabValue("2339-0", "> 0 OR true //", 1.0)  # type: ignore[arg-type]
    sneaky = LabValue("2339-0", ">", 1.0)
    object.__setattr__(sneaky, "op", "> 0 DETACH DELETE n //")  # bypassing validation still cannot reach Cypher
    with pytest.raises(QueryError, match="op"):
        loaded.cohort(sneaky)
    with pytest.raises(QueryError):
        LabValue("2339-0", ">", float("nan"))
    assert _snapshot(loaded) == before


def test_read_only_cypher_returns_rows_and_respects_limit(loaded: GraphStore) -> None:
    res = run_read_cypher(loaded, "MATCH (n:Lab) RETURN n.code AS code, n.value AS value, n", {})
    assert res.columns == ["code", "value", "n"] and not res.truncated
    assert res.rows[0]["code"] == "2339-0" and res.rows[0]["value"] == 101.5
    assert set(res.rows[0]["n"]["labels"]) == {"Lab", "Node"}
    res = run_read_cypher(loaded, "MATCH (n:Node) WHERE n.patient_id = $pid RETURN n.id AS id ORDER BY id", {"pid": "p1"},
                          row_limit=3)
    assert len(res.rows) == 3 and res.truncated
    path = run_read_cypher(loaded, "MATCH p = (:Patient)-[:HAS_LAB]->(:Lab) RETURN p", {}).rows[0]["p"]
    assert path["relationships"][0]["type"] == Rel.HAS_LAB.value
    assert run_read_cypher(loaded, "CALL db.labels() YIELD label RETURN label", {}).rows


@pytest.mark.parametrize(
    "stmt",
    [
        "CREATE (n:Node {id: 'x'}) RETURN n",
        "MERGE (n:Node {id: 'x'})",
        "MATCH (n) DETACH DELETE n",
        "MATCH (n) DELETE n",
        "MATCH (n:Lab) SET n.value = 0",
        "MATCH (n:Lab) REMOVE n.value",
        "MATCH (n:Lab) SET n:Evil",
        "CALL { CREATE (x:Node {id: 'y'}) } RETURN 1",
        "MATCH (n) CALL (n) { SET n.q = 1 } RETURN count(*)",
        "CALL dbms.components()",
        "CALL dbms.listConfig()",
        "CALL db.createLabel('Evil')",
        "CALL db.clearQueryCaches()",
        "CREATE INDEX evil FOR (n:Node) ON (n.x)",
        "DROP CONSTRAINT twin_node_id",
        "LOAD CSV FROM 'file:///etc/passwd' AS line RETURN line",
        "RETURN 1; MATCH (n) DETACH DELETE n",
        "CREATE DATABASE evil",
        "",
    ],
)
def test_read_only_cypher_rejects_writes_and_admin(loaded: GraphStore, stmt: str) -> None:
    before = _snapshot(loaded)
    with pytest.raises(QueryError):
        run_read_cypher(loaded, stmt, {})
    assert _snapshot(loaded) == before


def test_read_only_cypher_timeout_and_bad_arguments(loaded: GraphStore) -> None:
    with pytest.raises(QueryError, match="(?i)termin|timed? ?out"):
        run_read_cypher(loaded, "UNWIND range(1, 1000000000) AS x WITH x WHERE x < 0 RETURN count(*)", {}, timeout_s=0.5)
    with pytest.raises(QueryError, match="row_limit"):
        run_read_cypher(loaded, "RETURN 1", {}, row_limit=0)
    with pytest.raises(QueryError, match="timeout_s"):
        run_read_cypher(loaded, "RETURN 1", {}, timeout_s=-1)
    with pytest.raises(QueryError, match="(?i)syntax|invalid|expected"):
        run_read_cypher(loaded, "MATCH (n RETURN n", {})


def test_read_only_cypher_needs_a_neo4j_store(tmp_path) -> None:
    from graph.store.sqlite import SQLiteStore

    with SQLiteStore(tmp_path / "x.db") as s, pytest.raises(QueryError, match="Neo4j"):
        run_read_cypher(s, "RETURN 1", {})
