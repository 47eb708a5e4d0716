"""The store-level contract: every test runs on the embedded store AND on a real Neo4j server.

Known answers on small hand-built graphs: every node type round-trips, writes are atomic and
idempotent, pending edges are promoted, every predicate and every ``find_*`` filter agrees.
"""

from __future__ import annotations

import json

import pytest

from core.errors import QueryError
from graph.export import to_hetero_data, to_networkx, to_node_link
from graph.predicates import All, AnyOf, CarriesVariant, HasCondition, LabValue, Not, OnMedication
from graph.query import neighbourhood, patient_graph, timeline
from graph.schema import Edge, GraphBatch, Node, NodeType, Rel, concept_id
from graph.store.base import GraphStore, NodeQuery, StoreCounts
from tests.graph.store_samples import DIABETES, GLUCOSE, LOINC, METFORMIN, SCT, cohort_batch, every_type_batch, t


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
