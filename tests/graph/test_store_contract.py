"""The store-level contract: every test runs on the in-memory reference store, the embedded
SQLite store AND a real Neo4j server.

Known answers on small hand-built graphs: every node type round-trips, writes are atomic and
idempotent (also when a backend step fails half-way), pending edges are promoted, every
predicate and every ``find_*`` filter agrees, backend errors surface as project errors.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from core.errors import ConflictError, QueryError, RecordError, SchemaError, StoreError
from graph.export import to_hetero_data, to_networkx, to_node_link
from graph.predicates import All, AnyOf, CarriesVariant, HasCondition, LabValue, Not, OnMedication
from graph.query import neighbourhood, patient_graph, timeline
from graph.schema import Edge, GraphBatch, Node, NodeType, Rel, concept_id
from graph.store import MemoryStore, SQLiteStore, open_store
from graph.store.base import GraphStore, NodeQuery, StoreCounts
from graph.store.transfer import copy_store
from tests.graph.store_samples import DIABETES, GLUCOSE, LOINC, METFORMIN, SCT, cohort_batch, every_type_batch, t

#: One public call of every kind, for the "any method" error tests.
PUBLIC_CALLS: dict[str, Callable[[GraphStore], object]] = {
    "write": lambda s: s.write(GraphBatch(nodes=[Node("Patient/z", NodeType.PATIENT, patient_id="z")])),
    "get_nodes": lambda s: s.get_nodes(["Patient/p1"]),
    "find_nodes": lambda s: s.find_nodes(NodeQuery(patient_id="p1")),
    "find_edges": lambda s: s.find_edges(node_ids=["Patient/p1"]),
    "pending_edges": lambda s: s.pending_edges(),
    "patient_ids": lambda s: s.patient_ids(),
    "cohort": lambda s: s.cohort(Not(HasCondition(DIABETES))),
    "counts": lambda s: s.counts(),
}


@pytest.fixture(params=["memory", "sqlite", pytest.param("neo4j", marks=pytest.mark.neo4j)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[GraphStore]:
    """A fresh, empty store of each kind: in memory, an embedded SQLite file, the real Neo4j server."""
    if request.param == "neo4j":
        yield request.getfixturevalue("neo4j_store")
        return
    s: GraphStore = MemoryStore() if request.param == "memory" else SQLiteStore(tmp_path / "store.db")
    try:
        yield s
    finally:
        s.close()


@pytest.fixture()
def cohort_store(store: GraphStore) -> GraphStore:
    store.write(cohort_batch("a", [(t(2019, 1, 5), 95.0), (t(2020, 6, 1), 140.0)], DIABETES, (t(2019, 2), None), "SLC22A1"))
    store.write(cohort_batch("b", [(t(2019, 3, 1), 180.0)], DIABETES, (t(2018, 1), t(2019, 1)), None))
    store.write(cohort_batch("c", [(t(2020, 1, 1), 90.0)], None, None, "APOE"))
    store.write(cohort_batch("d", [], "38341003", (t(2021, 1), None), None))
    return store


# ---------------------------------------------------------------------- writes
def test_every_node_type_round_trips(store: GraphStore) -> None:
    batch = every_type_batch()
    stats = store.write(batch)
    assert (stats.nodes_added, stats.nodes_updated, stats.edges_added, stats.edges_pending) == (len(batch.nodes), 0, len(batch.edges), 0)
    got = {n.id: n for n in store.get_nodes([n.id for n in batch.nodes] + ["Observation/missing"])}
    assert got == {n.id: n for n in batch.nodes}
    assert {n.type for n in got.values()} == set(NodeType)
    assert sorted(store.find_edges(), key=lambda e: e.key) == sorted(batch.edges, key=lambda e: e.key)
    assert store.find_edges(node_ids=["Observation/l1"], rels=[Rel.HAS_LAB])[0].props == {"order": 1}


def test_counts_and_patient_ids(store: GraphStore) -> None:
    assert isinstance(store, GraphStore)
    assert store.counts() == StoreCounts()
    assert store.patient_ids() == []
    store.write(every_type_batch())
    store.write(cohort_batch("b", [(t(2019), 1.0)], None, None, None))
    c = store.counts()
    assert c.nodes == {"Concept": 1, "Condition": 1, "Encounter": 1, "Gene": 1, "Image": 1, "Lab": 2,
                       "Medication": 1, "Patient": 2, "Procedure": 1, "Variant": 1}
    assert c.edges["HAS_LAB"] == 2 and c.edges["CODED_AS"] == 2 and c.total_edges == 13
    assert c.pending_edges == 0
    assert store.patient_ids() == ["b", "p1"]


def test_rewrite_is_idempotent(store: GraphStore) -> None:
    batch = every_type_batch()
    store.write(batch)
    before = store.counts()
    stats = store.write(batch)
    assert (stats.nodes_added, stats.nodes_updated, stats.edges_added, stats.edges_pending) == (0, 0, 0, 0)
    assert store.counts() == before


def test_update_replaces_fields_and_clears_removed_ones(store: GraphStore) -> None:
    store.write(every_type_batch())
    changed = Node("Condition/c1", NodeType.CONDITION, patient_id="p1", time=t(2018, 3, 1), code=DIABETES, system=SCT,
                   props={"status": "active"})
    stats = store.write(GraphBatch(nodes=[changed]))
    assert (stats.nodes_added, stats.nodes_updated) == (0, 1)
    assert store.get_nodes(["Condition/c1"]) == [changed]  # end cleared, props replaced


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(GraphBatch(nodes=[Node("Observation/new", NodeType.LAB, patient_id="p1")],
                                edges=[Edge("Observation/new", Rel.HAS_LAB, "Patient/p1", "p1")]), id="schema-violating-edge"),
        pytest.param(GraphBatch(nodes=[Node("Observation/new", NodeType.LAB, patient_id="p1"),
                                       Node("Observation/x", NodeType.LAB, props={"bad": object()})]), id="unserialisable-props"),
        pytest.param(GraphBatch(nodes=[Node("Observation/new", NodeType.LAB, value=float("nan"))]), id="nan-value"),
        pytest.param(GraphBatch(nodes=[Node("Condition/zz", NodeType.CONDITION, patient_id="p1")],
                                edges=[Edge("Patient/p1", Rel.HAS_CONDITION, "Condition/zz", "p1"),
                                       Edge("MedicationRequest/m1", Rel.TREATS, "Condition/zz", "p1"),
                                       Edge("Observation/l1", Rel.IN_GENE, "Condition/zz", "p1")]), id="violation-after-valid-edges"),
    ],
)
def test_failed_batch_changes_nothing(store: GraphStore, bad: GraphBatch) -> None:
    store.write(every_type_batch())
    store.write(GraphBatch(edges=[Edge("Observation/l1", Rel.NEXT, "Observation/l2", "p1")]))  # one pending edge
    before, pending_before = store.counts(), store.find_edges()
    with pytest.raises((ValueError, TypeError)):
        store.write(bad)
    assert store.counts() == before
    assert store.find_edges() == pending_before
    assert store.get_nodes(["Observation/new", "Condition/zz"]) == []


def test_pending_edges_are_promoted_when_the_endpoint_arrives(store: GraphStore) -> None:
    store.write(cohort_batch("a", [(t(2019), 1.0)], None, None, None))
    early = GraphBatch(nodes=[Node("Observation/a-g9", NodeType.LAB, patient_id="a", time=t(2020), code=GLUCOSE, value=2.0)],
                       edges=[Edge("Patient/a", Rel.HAS_LAB, "Observation/a-g9", "a"),
                              Edge("Observation/a-g9", Rel.RECORDED_IN, "Encounter/a-e1", "a", {"k": "v"})])
    stats = store.write(early)
    assert (stats.edges_added, stats.edges_pending) == (1, 1)
    assert store.write(early).edges_pending == 1  # re-writing keeps one pending copy
    assert store.counts().pending_edges == 1
    assert store.find_edges(node_ids=["Encounter/a-e1"]) == []
    stats = store.write(GraphBatch(nodes=[Node("Encounter/a-e1", NodeType.ENCOUNTER, patient_id="a", time=t(2020))]))
    assert (stats.nodes_added, stats.edges_added, stats.edges_pending) == (1, 1, 0)
    assert store.find_edges(node_ids=["Encounter/a-e1"]) == [
        Edge("Observation/a-g9", Rel.RECORDED_IN, "Encounter/a-e1", "a", {"k": "v"})]
    assert store.counts().pending_edges == 0


def test_promotion_checks_the_schema_atomically(store: GraphStore) -> None:
    store.write(GraphBatch(nodes=[Node("Patient/a", NodeType.PATIENT, patient_id="a")],
                           edges=[Edge("Patient/a", Rel.HAS_LAB, "Observation/z", "a")]))
    before = store.counts()
    with pytest.raises(ValueError, match="schema"):
        store.write(GraphBatch(nodes=[Node("Observation/z", NodeType.CONDITION, patient_id="a")]))  # wrong type for HAS_LAB
    assert store.counts() == before and store.get_nodes(["Observation/z"]) == []


def test_edge_between_two_missing_nodes_and_batch_internal_order(store: GraphStore) -> None:
    b = GraphBatch(edges=[Edge("Patient/q", Rel.HAS_LAB, "Observation/q1", "q")])
    assert store.write(b).edges_pending == 1
    stats = store.write(GraphBatch(nodes=[Node("Observation/q1", NodeType.LAB, patient_id="q"),
                                          Node("Patient/q", NodeType.PATIENT, patient_id="q")]))
    assert (stats.edges_added, stats.edges_pending) == (1, 0)
    assert store.counts().edges == {"HAS_LAB": 1}


# ---------------------------------------------------------------------- ownership: one patient per record
def _lab(pid: str, nid: str = "Observation/shared", value: float = 1.0) -> GraphBatch:
    return GraphBatch(nodes=[Node(nid, NodeType.LAB, patient_id=pid, time=t(2020), code=GLUCOSE, value=value)],
                      edges=[Edge(f"Patient/{pid}", Rel.HAS_LAB, nid, pid)])


def _patients(*pids: str) -> GraphBatch:
    return GraphBatch(nodes=[Node(f"Patient/{p}", NodeType.PATIENT, patient_id=p) for p in pids])


@pytest.mark.parametrize(
    ("attack", "resource"),
    [
        pytest.param(lambda: _lab("b", value=9.0), "Observation/shared", id="take-over-a-node"),
        pytest.param(lambda: GraphBatch(nodes=[*_patients("c").nodes, *_lab("c").nodes]), "Observation/shared",
                     id="take-over-with-a-new-patient"),
        pytest.param(lambda: GraphBatch(nodes=[Node("Observation/shared", NodeType.LAB, time=t(2020))]),
                     "Observation/shared", id="turn-into-a-shared-node"),
        pytest.param(lambda: GraphBatch(nodes=[Node("Encounter/b-e", NodeType.ENCOUNTER, patient_id="b")],
                                        edges=[Edge("Patient/b", Rel.HAS_ENCOUNTER, "Encounter/b-e", "b"),
                                               Edge("Observation/shared", Rel.RECORDED_IN, "Encounter/b-e", "b")]),
                     "Encounter/b-e", id="edge-from-another-patients-node"),
        pytest.param(lambda: GraphBatch(nodes=[Node("Encounter/b-e", NodeType.ENCOUNTER, patient_id="b")],
                                        edges=[Edge("Observation/b1", Rel.RECORDED_IN, "Encounter/a-e", "b")]),
                     "Observation/b1", id="edge-to-another-patients-node"),
        pytest.param(lambda: GraphBatch(edges=[Edge("Patient/b", Rel.HAS_LAB, "Observation/shared", "b")]),
                     "Patient/b", id="has-edge-to-another-patients-node"),
        pytest.param(lambda: GraphBatch(nodes=[Node("Observation/z", NodeType.LAB, patient_id="a"),
                                               Node("Observation/z", NodeType.LAB, patient_id="b")]),
                     "Observation/z", id="one-id-two-patients-in-one-batch"),
    ],
)
def test_a_write_that_touches_another_patients_records_is_refused_whole(
    store: GraphStore, attack: Callable[[], GraphBatch], resource: str
) -> None:
    store.write(_patients("a", "b"))
    store.write(GraphBatch(nodes=[*_lab("a").nodes, Node("Encounter/a-e", NodeType.ENCOUNTER, patient_id="a"),
                                  Node("Observation/b1", NodeType.LAB, patient_id="b")],
                           edges=_lab("a").edges))
    before = _state(store)
    with pytest.raises(ConflictError) as info:
        store.write(attack())
    assert info.value.resource == resource
    assert "another patient" in str(info.value) or "two different patients" in str(info.value)
    assert _state(store) == before
    assert [n.patient_id for n in store.get_nodes(["Observation/shared"])] == ["a"]


def test_a_pending_reference_that_would_cross_patients_is_refused_on_promotion(store: GraphStore) -> None:
    store.write(_patients("a", "b"))
    store.write(GraphBatch(nodes=[Node("MedicationRequest/b-m", NodeType.MEDICATION, patient_id="b")],
                           edges=[Edge("MedicationRequest/b-m", Rel.TREATS, "Condition/later", "b")]))
    before = _state(store)
    with pytest.raises(ConflictError, match="another patient") as info:
        store.write(GraphBatch(nodes=[Node("Condition/later", NodeType.CONDITION, patient_id="a")]))
    assert info.value.resource == "MedicationRequest/b-m"
    assert _state(store) == before
    store.write(GraphBatch(nodes=[Node("Condition/later", NodeType.CONDITION, patient_id="b")]))  # its own: promoted
    assert store.counts().pending_edges == 0 and store.counts().edges == {"TREATS": 1}


def test_the_same_patient_may_resend_and_change_its_records(store: GraphStore) -> None:
    store.write(_patients("a"))
    assert store.write(_lab("a")).nodes_added == 1
    stats = store.write(_lab("a"))
    assert (stats.nodes_added, stats.nodes_updated, stats.edges_added) == (0, 0, 0)
    assert store.write(_lab("a", value=5.0)).nodes_updated == 1
    assert [n.value for n in store.get_nodes(["Observation/shared"])] == [5.0]


def test_a_record_of_a_patient_that_does_not_exist_is_refused(store: GraphStore) -> None:
    store.write(_patients("a"))
    before = _state(store)
    with pytest.raises(RecordError, match="'ghost' does not exist") as info:
        store.write(GraphBatch(nodes=[Node("Observation/g", NodeType.LAB, patient_id="a"),
                                      Node("Observation/h", NodeType.LAB, patient_id="ghost")],
                               edges=[Edge("Patient/ghost", Rel.HAS_LAB, "Observation/h", "ghost")]))
    assert not isinstance(info.value, ConflictError)
    assert (info.value.resource, info.value.field) == ("Observation/h", "patient_id")
    assert _state(store) == before  # no node, and no edge left pending for a patient that never comes
    # in the same batch as its patient, or once the patient is stored, the record is accepted
    stats = store.write(GraphBatch(nodes=[*_patients("ghost").nodes, Node("Observation/h", NodeType.LAB,
                                                                          patient_id="ghost")],
                                   edges=[Edge("Patient/ghost", Rel.HAS_LAB, "Observation/h", "ghost")]))
    assert (stats.nodes_added, stats.edges_added, stats.edges_pending) == (2, 1, 0)


def test_a_patient_node_must_carry_its_own_id(store: GraphStore) -> None:
    with pytest.raises(SchemaError, match="Patient/<patient_id>"):
        store.write(GraphBatch(nodes=[Node("Patient/x", NodeType.PATIENT, patient_id="y")]))
    assert store.counts() == StoreCounts()


# ---------------------------------------------------------------------- reads
def test_find_nodes_filters(cohort_store: GraphStore) -> None:
    s = cohort_store
    a = s.find_nodes(NodeQuery(patient_id="a"))
    assert {n.id for n in a[:2]} == {"Patient/a", "Observation/a-v"}  # timeless first (by id)
    assert [n.id for n in a[:2]] == sorted(n.id for n in a[:2])
    assert [n.time for n in a[2:]] == sorted(n.time for n in a[2:])
    assert [n.id for n in s.find_nodes(NodeQuery(types=(NodeType.LAB,), codes=(GLUCOSE,), start=t(2019, 2), end=t(2020, 1, 1)))] == [
        "Observation/b-g0", "Observation/c-g0"]
    assert {n.id for n in s.find_nodes(NodeQuery(types=(NodeType.CONDITION, NodeType.MEDICATION), patient_id="d"))} == {
        "Condition/d-c", "MedicationRequest/d-m"}
    assert [n.id for n in s.find_nodes(NodeQuery(codes=("38341003",)))] == ["Condition/d-c"]
    assert len(s.find_nodes(NodeQuery(patient_id="a", limit=2))) == 2
    assert s.find_nodes(NodeQuery(patient_id="nobody")) == []
    assert s.find_nodes(NodeQuery(types=(NodeType.IMAGE,))) == []


def test_find_nodes_as_of_cuts_the_future(cohort_store: GraphStore) -> None:
    s = cohort_store
    cut = s.find_nodes(NodeQuery(patient_id="a", as_of=t(2019, 12, 31)))
    assert "Observation/a-g1" not in {n.id for n in cut} and "Observation/a-g0" in {n.id for n in cut}
    assert "Patient/a" in {n.id for n in cut}  # timeless nodes exist at every as_of
    med_b = NodeQuery(types=(NodeType.MEDICATION,), patient_id="b")
    assert s.find_nodes(NodeQuery(types=med_b.types, patient_id="b", as_of=t(2018, 6)))[0].end is None  # end in the future
    assert s.find_nodes(med_b)[0].end == t(2019, 1)
    assert s.find_nodes(NodeQuery(types=med_b.types, patient_id="b", as_of=t(2019, 6)))[0].end == t(2019, 1)


def test_find_edges_filters(cohort_store: GraphStore) -> None:
    s = cohort_store
    assert {e.rel for e in s.find_edges(patient_id="a")} == {Rel.HAS_LAB, Rel.CODED_AS, Rel.HAS_CONDITION, Rel.HAS_MEDICATION,
                                                              Rel.CARRIES, Rel.IN_GENE}
    assert all(e.patient_id == "b" for e in s.find_edges(patient_id="b"))
    concept = concept_id(LOINC, GLUCOSE)
    coded = s.find_edges(node_ids=[concept])
    assert {e.src for e in coded} == {"Observation/a-g0", "Observation/a-g1", "Observation/b-g0", "Observation/c-g0"}
    assert [e.key for e in s.find_edges(node_ids=[concept], patient_id="c")] == [("Observation/c-g0", "CODED_AS", concept)]
    assert s.find_edges(node_ids=["Patient/a"], rels=[Rel.CARRIES]) == [Edge("Patient/a", Rel.CARRIES, "Observation/a-v", "a")]
    both_ends = s.find_edges(node_ids=["Observation/a-v"])
    assert {e.key for e in both_ends} == {("Patient/a", "CARRIES", "Observation/a-v"), ("Observation/a-v", "IN_GENE", "Gene/SLC22A1")}
    assert [e.key for e in s.find_edges(rels=[Rel.IN_GENE])] == sorted(e.key for e in s.find_edges(rels=[Rel.IN_GENE]))
    assert len(s.find_edges(rels=[Rel.IN_GENE])) == 2
    assert s.find_edges(node_ids=[]) == [] and s.find_edges(patient_id="nobody") == []


@pytest.mark.parametrize(
    ("pred", "as_of", "expected"),
    [
        (HasCondition(DIABETES), None, ["a", "b"]),
        (HasCondition(DIABETES, system=SCT), None, ["a", "b"]),
        (HasCondition(DIABETES, system="http://other"), None, []),
        (HasCondition(DIABETES), t(2017), []),
        (LabValue(GLUCOSE, ">", 130), None, ["a", "b"]),
        (LabValue(GLUCOSE, ">=", 140), None, ["a", "b"]),
        (LabValue(GLUCOSE, ">", 130, within_days=365), t(2020, 12, 31), ["a"]),
        (LabValue(GLUCOSE, ">", 130, within_days=365), t(2019, 12, 31), ["b"]),
        (LabValue(GLUCOSE, "<=", 95), None, ["a", "c"]),
        (LabValue(GLUCOSE, "<", 95), None, ["c"]),
        (LabValue(GLUCOSE, "=", 90), None, ["c"]),
        (LabValue(GLUCOSE, "<", 95), t(2019, 12, 31), []),
        (OnMedication(METFORMIN), None, ["a", "b", "d"]),
        (OnMedication(METFORMIN), t(2019, 6), ["a"]),
        (OnMedication(METFORMIN), t(2018, 6), ["b"]),
        (OnMedication(METFORMIN), t(2019, 1), []),  # b's ended exactly then, a's not started yet
        (CarriesVariant("APOE"), None, ["c"]),
        (CarriesVariant("apoe"), None, ["c"]),  # gene symbols are case-insensitive ids
        (HasCondition(DIABETES) & ~CarriesVariant("SLC22A1"), None, ["b"]),
        (CarriesVariant("APOE") | OnMedication(METFORMIN), t(2019, 6), ["a", "c"]),
        (Not(HasCondition(DIABETES)), None, ["c", "d"]),
        (All((HasCondition(DIABETES), LabValue(GLUCOSE, ">", 100), OnMedication(METFORMIN))), t(2021), ["a"]),
        (AnyOf((CarriesVariant("APOE"), HasCondition("38341003"))), None, ["c", "d"]),
        (Not(AnyOf((HasCondition(DIABETES), CarriesVariant("APOE")))), None, ["d"]),
    ],
)
def test_cohort_predicates(cohort_store: GraphStore, pred, as_of, expected) -> None:
    assert cohort_store.cohort(pred, as_of=as_of) == expected


def test_invalid_predicates_raise_query_error(cohort_store: GraphStore) -> None:
    with pytest.raises(QueryError, match="as_of"):
        cohort_store.cohort(LabValue(GLUCOSE, ">", 1, within_days=30))
    with pytest.raises(QueryError):
        cohort_store.cohort(All(()))
    with pytest.raises(QueryError):
        cohort_store.cohort("has_condition")  # type: ignore[arg-type]


# ---------------------------------------------------------------------- query layer and exports on top
def test_query_layer_and_exports(cohort_store: GraphStore) -> None:
    s = cohort_store
    tl = timeline(s, "a", as_of=t(2019, 12, 31))
    assert [n.id for n in tl if n.type == NodeType.LAB] == ["Observation/a-g0"]
    g = patient_graph(s, "a")
    ids = {n.id for n in g.nodes}
    assert "Gene/SLC22A1" in ids and "Patient/b" not in ids
    assert all(e.src in ids and e.dst in ids for e in g.edges)
    nb = neighbourhood(s, concept_id(LOINC, GLUCOSE))
    assert {n.id for n in nb.nodes if n.type == NodeType.LAB} == {
        "Observation/a-g0", "Observation/a-g1", "Observation/b-g0", "Observation/c-g0"}
    nxg = to_networkx(g)
    assert nxg.number_of_nodes() == len(g.nodes) and nxg.number_of_edges() == len(g.edges)
    doc = json.loads(json.dumps(to_node_link(g)))
    assert len(doc["nodes"]) == len(g.nodes)
    data = to_hetero_data(g)
    assert sorted(data["Lab"].value.tolist()) == [95.0, 140.0]


def test_within_days_outside_the_calendar_is_a_query_error(store):
    from datetime import UTC, datetime

    from core.errors import QueryError
    from graph.predicates import LabValue

    with pytest.raises(QueryError, match="outside the calendar"):
        store.cohort(LabValue("2339-0", ">", 1.0, within_days=1e9), as_of=datetime(2020, 1, 1, tzinfo=UTC))


# ---------------------------------------------------------------------- atomicity and pending edges, in depth
def _state(store: GraphStore) -> tuple[object, ...]:
    return store.counts(), store.find_nodes(NodeQuery()), store.find_edges(), store.pending_edges()


@pytest.mark.parametrize("failing_hook", ["_put_nodes", "_put_edges", "_drop_pending", "_put_pending"])
def test_a_backend_step_failing_mid_write_rolls_back_everything(
    store: GraphStore, monkeypatch: pytest.MonkeyPatch, failing_hook: str
) -> None:
    store.write(every_type_batch())
    store.write(GraphBatch(edges=[Edge("Observation/l1", Rel.NEXT, "Observation/l2", "p1")]))  # pending
    before = _state(store)
    real = getattr(store, failing_hook)

    def fail_after_the_real_step(*args: Any) -> Any:
        real(*args)
        raise RuntimeError("injected failure")

    monkeypatch.setattr(store, failing_hook, fail_after_the_real_step)
    batch = GraphBatch(  # updates a node, adds two, promotes the pending edge, adds a real and a pending edge
        nodes=[Node("Observation/l2", NodeType.LAB, patient_id="p1", time=t(2019, 2), code=GLUCOSE, value=1.0),
               Node("Condition/c1", NodeType.CONDITION, patient_id="p1", time=t(2018, 3, 1), code=DIABETES),
               Node("Procedure/x2", NodeType.PROCEDURE, patient_id="p1", time=t(2019, 3))],
        edges=[Edge("Patient/p1", Rel.HAS_LAB, "Observation/l2", "p1"),
               Edge("Procedure/x2", Rel.RECORDED_IN, "Encounter/later", "p1")],
    )
    with pytest.raises(RuntimeError, match="injected"):
        store.write(batch)
    assert _state(store) == before
    monkeypatch.undo()
    stats = store.write(batch)  # and the same batch goes through once nothing fails
    assert (stats.nodes_added, stats.nodes_updated, stats.edges_added, stats.edges_pending) == (2, 1, 2, 1)


def test_pending_edges_wait_for_every_endpoint_and_the_batch_copy_wins(store: GraphStore) -> None:
    first = [Edge("Patient/q", Rel.HAS_LAB, "Observation/q1", "q", {"v": 1}),
             Edge("Observation/q1", Rel.RECORDED_IN, "Encounter/q", "q")]
    stats = store.write(GraphBatch(edges=first))
    assert (stats.edges_added, stats.edges_pending) == (0, 2)
    assert store.pending_edges() == sorted(first, key=lambda e: e.key)
    newer = Edge("Patient/q", Rel.HAS_LAB, "Observation/q1", "q", {"v": 2})
    stats = store.write(GraphBatch(nodes=[Node("Patient/q", NodeType.PATIENT, patient_id="q"),
                                          Node("Observation/q1", NodeType.LAB, patient_id="q")], edges=[newer]))
    assert (stats.nodes_added, stats.edges_added, stats.edges_pending) == (2, 1, 1)
    assert store.find_edges() == [newer]  # promoted once, with the batch's newer props
    assert store.pending_edges() == [first[1]]
    stats = store.write(GraphBatch(nodes=[Node("Encounter/q", NodeType.ENCOUNTER, patient_id="q")]))
    assert (stats.edges_added, stats.edges_pending) == (1, 0)
    assert store.pending_edges() == [] and store.counts().edges == {"HAS_LAB": 1, "RECORDED_IN": 1}


def test_retyping_a_node_moves_it_between_types(store: GraphStore) -> None:
    store.write(GraphBatch(nodes=[Node("Patient/p", NodeType.PATIENT, patient_id="p"),
                                  Node("Observation/x", NodeType.LAB, patient_id="p", code="c")]))
    stats = store.write(GraphBatch(nodes=[Node("Observation/x", NodeType.VARIANT, patient_id="p", code="c")]))
    assert (stats.nodes_added, stats.nodes_updated) == (0, 1)
    assert store.counts().nodes == {"Patient": 1, "Variant": 1}
    assert store.find_nodes(NodeQuery(types=(NodeType.LAB,))) == []
    assert [n.type for n in store.find_nodes(NodeQuery(types=(NodeType.VARIANT,)))] == [NodeType.VARIANT]


def test_duplicates_within_a_batch_count_once_and_the_last_wins(store: GraphStore) -> None:
    a = Node("Patient/d", NodeType.PATIENT, patient_id="d", props={"v": 1})
    b = Node("Patient/d", NodeType.PATIENT, patient_id="d", props={"v": 2})
    stats = store.write(GraphBatch(nodes=[a, b]))
    assert (stats.nodes_added, stats.nodes_updated) == (1, 0)
    assert store.get_nodes(["Patient/d", "Patient/d"]) == [b]


# ---------------------------------------------------------------------- errors: one boundary, project errors only
def test_project_errors_from_a_backend_pass_through_unchanged(
    store: GraphStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    err = QueryError("raised by the backend itself")

    def raise_it(*_: object) -> None:
        raise err

    monkeypatch.setattr(store, "_counts", raise_it)
    with pytest.raises(QueryError) as info:
        store.counts()
    assert info.value is err
    with pytest.raises(SchemaError):  # the schema check raises SchemaError (a ValueError), not a StoreError
        store.write(GraphBatch(nodes=[Node("Observation/new", NodeType.LAB, patient_id="p1"),
                                      Node("Patient/p1", NodeType.PATIENT, patient_id="p1")],
                               edges=[Edge("Observation/new", Rel.HAS_LAB, "Patient/p1", "p1")]))


@pytest.mark.parametrize("call", list(PUBLIC_CALLS))
def test_every_method_of_a_closed_store_raises_store_error(store: GraphStore, call: str) -> None:
    store.write(every_type_batch())
    store.close()
    with pytest.raises(StoreError) as info:
        PUBLIC_CALLS[call](store)
    assert not isinstance(info.value.__cause__, StoreError)  # translated once


def test_invalid_reads_are_query_errors_everywhere(store: GraphStore) -> None:
    store.write(every_type_batch())
    with pytest.raises(QueryError, match="limit"):
        store.find_nodes(NodeQuery(limit=-1))
    assert store.find_nodes(NodeQuery(limit=0)) == []
    assert store.find_edges(rels=[]) == store.find_edges()  # empty: every relationship
    sneaky = LabValue(GLUCOSE, ">", 1.0)
    object.__setattr__(sneaky, "op", "> 0 OR 1=1 --")
    with pytest.raises(QueryError, match="op"):
        store.cohort(sneaky)


# ---------------------------------------------------------------------- SQLite: any sqlite3 error after open: StoreError
@pytest.fixture()
def filled_sqlite(tmp_path: Path) -> Iterator[SQLiteStore]:
    s = SQLiteStore(tmp_path / "store.db")
    s.write(every_type_batch())
    try:
        yield s
    finally:
        s.close()


@pytest.mark.parametrize("call", list(PUBLIC_CALLS))
def test_sqlite_connection_closed_underneath_is_a_store_error(filled_sqlite: SQLiteStore, call: str) -> None:
    filled_sqlite._conn.close()
    with pytest.raises(StoreError, match="closed") as info:
        PUBLIC_CALLS[call](filled_sqlite)
    assert isinstance(info.value.__cause__, sqlite3.ProgrammingError)


def test_sqlite_locked_by_another_writer_is_a_store_error(filled_sqlite: SQLiteStore) -> None:
    before = _state(filled_sqlite)
    other = sqlite3.connect(filled_sqlite.path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        filled_sqlite._conn.execute("PRAGMA busy_timeout = 0")
        with pytest.raises(StoreError, match="locked") as info:
            PUBLIC_CALLS["write"](filled_sqlite)
        assert isinstance(info.value.__cause__, sqlite3.OperationalError)
        assert filled_sqlite.counts() == before[0]  # readers are not blocked (WAL)
    finally:
        other.close()
    assert _state(filled_sqlite) == before


def test_sqlite_read_only_database_is_a_store_error(filled_sqlite: SQLiteStore) -> None:
    before = _state(filled_sqlite)
    filled_sqlite._conn.execute("PRAGMA query_only = ON")
    with pytest.raises(StoreError, match="readonly"):
        PUBLIC_CALLS["write"](filled_sqlite)
    filled_sqlite._conn.execute("PRAGMA query_only = OFF")
    assert _state(filled_sqlite) == before


def test_sqlite_missing_table_is_a_store_error_and_rolls_back(filled_sqlite: SQLiteStore) -> None:
    filled_sqlite._conn.execute("DROP TABLE pending_edges")
    nodes_before = filled_sqlite.find_nodes(NodeQuery())
    with pytest.raises(StoreError, match="no such table"):
        filled_sqlite.write(GraphBatch(nodes=[Node("Patient/z", NodeType.PATIENT, patient_id="z")],
                                      edges=[Edge("Patient/z", Rel.HAS_LAB, "Observation/later", "z")]))
    assert filled_sqlite.find_nodes(NodeQuery()) == nodes_before
    with pytest.raises(StoreError, match="no such table"):
        filled_sqlite.counts()


def test_sqlite_file_that_is_not_a_database_is_a_store_error(tmp_path: Path) -> None:
    bad = tmp_path / "not.db"
    bad.write_bytes(b"this is not an SQLite file" * 100)
    with pytest.raises(StoreError, match="not a database"):
        SQLiteStore(bad)


# ---------------------------------------------------------------------- the memory store
def test_memory_url_opens_a_fresh_store_each_time() -> None:
    a, b = open_store("memory://"), open_store("memory://")
    assert isinstance(a, MemoryStore) and a is not b and a.url == "memory://"
    a.write(every_type_batch())
    assert b.counts() == StoreCounts() and a.counts().total_nodes == len(every_type_batch().nodes)


def test_memory_and_sqlite_copy_into_each_other_losslessly(tmp_path: Path) -> None:
    mem = MemoryStore()
    mem.write(every_type_batch())
    mem.write(cohort_batch("b", [(t(2019), 7.5)], DIABETES, (t(2019), t(2020)), "APOE"))
    mem.write(GraphBatch(edges=[Edge("Observation/l1", Rel.NEXT, "Observation/later", "p1", {"k": [1, 2]})]))
    with SQLiteStore(tmp_path / "copy.db") as sq:
        report = copy_store(mem, sq)
        assert (report.pending_edges, _state(sq)) == (1, _state(mem))
        back = MemoryStore()
        assert copy_store(sq, back) == report
        assert _state(back) == _state(mem)
