"""Query layer and exports on a small hand-built graph with known answers."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import networkx as nx
import pytest

from core.errors import QueryError
from graph.export import deidentify, to_hetero_data, to_networkx, to_node_link
from graph.predicates import CarriesVariant, HasCondition, LabValue, OnMedication, predicate_from_dict
from graph.query import cohort, find_nodes, neighbourhood, patient_graph, timeline
from graph.schema import Edge, GraphBatch, Node, NodeType, Rel, concept_id, gene_id
from graph.store import SQLiteStore


def t(y: int, m: int = 1, d: int = 1) -> datetime:
    return datetime(y, m, d, tzinfo=UTC)


LOINC, SCT, RX = "http://loinc.org", "http://snomed.info/sct", "http://www.nlm.nih.gov/research/umls/rxnorm"


def _patient(pid: str, glucose: list[tuple[datetime, float]], cond: str | None, med: tuple[datetime, datetime | None] | None,
             gene: str | None) -> GraphBatch:
    b = GraphBatch()
    p = f"Patient/{pid}"
    b.nodes.append(Node(id=p, type=NodeType.PATIENT, patient_id=pid, props={"sex": "female", "birth_date": "1950-02-03"}))
    enc = f"Encounter/{pid}-e1"
    b.nodes.append(Node(id=enc, type=NodeType.ENCOUNTER, patient_id=pid, time=t(2019)))
    b.edges.append(Edge(p, Rel.HAS_ENCOUNTER, enc, pid))
    for i, (when, v) in enumerate(glucose):
        lid = f"Observation/{pid}-g{i}"
        b.nodes.append(Node(id=lid, type=NodeType.LAB, patient_id=pid, time=when, code="2339-0", system=LOINC, value=v, unit="mg/dL"))
        b.edges += [Edge(p, Rel.HAS_LAB, lid, pid), Edge(lid, Rel.CODED_AS, concept_id(LOINC, "2339-0"), pid),
                    Edge(lid, Rel.RECORDED_IN, enc, pid)]
    b.nodes.append(Node(id=concept_id(LOINC, "2339-0"), type=NodeType.CONCEPT, code="2339-0", system=LOINC))
    if cond:
        cid = f"Condition/{pid}-c"
        b.nodes += [Node(id=cid, type=NodeType.CONDITION, patient_id=pid, time=t(2018), code=cond, system=SCT),
                    Node(id=concept_id(SCT, cond), type=NodeType.CONCEPT, code=cond, system=SCT)]
        b.edges += [Edge(p, Rel.HAS_CONDITION, cid, pid), Edge(cid, Rel.CODED_AS, concept_id(SCT, cond), pid)]
    if med:
        mid = f"MedicationRequest/{pid}-m"
        b.nodes.append(Node(id=mid, type=NodeType.MEDICATION, patient_id=pid, time=med[0], end=med[1], code="860975",
                            system=RX, value=500.0, unit="mg"))
        b.edges.append(Edge(p, Rel.HAS_MEDICATION, mid, pid))
        if cond:
            b.edges.append(Edge(mid, Rel.TREATS, f"Condition/{pid}-c", pid))
    if gene:
        vid = f"Observation/{pid}-v"
        b.nodes += [Node(id=vid, type=NodeType.VARIANT, patient_id=pid, props={"gene": gene, "hgvs": "c.1A>G"}),
                    Node(id=gene_id(gene), type=NodeType.GENE, code=gene)]
        b.edges += [Edge(p, Rel.CARRIES, vid, pid), Edge(vid, Rel.IN_GENE, gene_id(gene), pid)]
    return b


@pytest.fixture()
def store(tmp_path):
    s = SQLiteStore(tmp_path / "q.db")
    s.write(_patient("a", [(t(2019, 1, 5), 95.0), (t(2020, 6, 1), 140.0)], "44054006", (t(2019, 2), None), "SLC22A1"))
    s.write(_patient("b", [(t(2019, 3, 1), 180.0)], "44054006", (t(2018, 1), t(2019, 1)), None))
    s.write(_patient("c", [(t(2020, 1, 1), 90.0)], None, None, "APOE"))
    yield s
    s.close()


def test_timeline_is_time_ordered_and_cut(store):
    full = timeline(store, "a")
    assert [n.time for n in full] == sorted(n.time for n in full)
    assert {n.type for n in full} == {NodeType.ENCOUNTER, NodeType.LAB, NodeType.CONDITION, NodeType.MEDICATION}
    cut = timeline(store, "a", as_of=t(2019, 12, 31))
    assert [n.id for n in cut if n.type == NodeType.LAB] == ["Observation/a-g0"]


def test_as_of_hides_future_end(store):
    meds = find_nodes(store, types=[NodeType.MEDICATION], patient_id="b", as_of=t(2018, 6))
    assert meds[0].end is None  # the stop date lies in the future of as_of
    assert find_nodes(store, types=[NodeType.MEDICATION], patient_id="b")[0].end == t(2019, 1)


def test_find_nodes_window_and_codes(store):
    got = find_nodes(store, types=[NodeType.LAB], codes=["2339-0"], start=t(2019, 2), end=t(2020, 1, 1))
    assert [n.id for n in got] == ["Observation/b-g0", "Observation/c-g0"]
    with pytest.raises(QueryError, match="empty"):
        find_nodes(store, start=t(2021), end=t(2020))


@pytest.mark.parametrize(
    ("pred", "as_of", "expected"),
    [
        (HasCondition("44054006"), None, ["a", "b"]),
        (HasCondition("44054006"), t(2017), []),
        (LabValue("2339-0", ">", 130), None, ["a", "b"]),
        (LabValue("2339-0", ">", 130, within_days=365), t(2020, 12, 31), ["a"]),
        (LabValue("2339-0", "<=", 95), None, ["a", "c"]),
        (OnMedication("860975"), t(2019, 6), ["a"]),
        (OnMedication("860975"), t(2018, 6), ["b"]),
        (CarriesVariant("APOE"), None, ["c"]),
        (HasCondition("44054006") & ~CarriesVariant("SLC22A1"), None, ["b"]),
        (CarriesVariant("APOE") | OnMedication("860975"), t(2019, 6), ["a", "c"]),
    ],
)
def test_cohort_predicates(store, pred, as_of, expected):
    assert cohort(store, pred, as_of=as_of) == expected


def test_predicate_json_form(store):
    spec = {"all": [{"has_condition": "44054006"}, {"not": {"carries_variant_in": "SLC22A1"}}]}
    assert cohort(store, predicate_from_dict(spec)) == ["b"]
    for bad in ({}, {"lab": "x", "op": "!", "value": 1}, {"all": []}, {"frobnicate": 1}, {"lab": "x"}):
        with pytest.raises(QueryError):
            predicate_from_dict(bad)


def test_sql_injection_through_predicate_values_is_inert(store):
    before = store.counts()
    evil = "x' OR 1=1; DROP TABLE nodes; --"
    assert cohort(store, HasCondition(evil)) == []
    assert cohort(store, CarriesVariant(evil)) == []
    assert store.counts() == before


def test_patient_graph_and_neighbourhood(store):
    g = patient_graph(store, "a")
    ids = {n.id for n in g.nodes}
    assert "Gene/SLC22A1" in ids and "Patient/b" not in ids
    assert all(e.src in ids and e.dst in ids for e in g.edges)
    g_old = patient_graph(store, "a", as_of=t(2019, 1, 10))
    assert "Observation/a-g1" not in {n.id for n in g_old.nodes}
    nb = neighbourhood(store, concept_id(LOINC, "2339-0"))
    assert {n.id for n in nb.nodes if n.type == NodeType.LAB} == {"Observation/a-g0", "Observation/a-g1", "Observation/b-g0", "Observation/c-g0"}
    two = neighbourhood(store, "Gene/SLC22A1", hops=2)
    assert "Patient/a" in {n.id for n in two.nodes}
    with pytest.raises(QueryError):
        patient_graph(store, "nobody")


def test_exports_agree(store):
    g = patient_graph(store, "a")
    nxg = to_networkx(g)
    assert nxg.number_of_nodes() == len(g.nodes) and nxg.number_of_edges() == len(g.edges)
    doc = json.loads(json.dumps(to_node_link(g)))
    back = nx.node_link_graph(doc, edges="links")
    assert back.number_of_nodes() == len(g.nodes) and back.number_of_edges() == len(g.edges)
    data = to_hetero_data(g)
    assert data["Lab"].num_nodes == 2
    assert data["Patient", "HAS_LAB", "Lab"].edge_index.shape == (2, 2)
    assert sorted(data["Lab"].value.tolist()) == [95.0, 140.0]


def test_deidentify_removes_identifiers(store):
    g = deidentify(patient_graph(store, "a"), salt="s3cret")
    text = json.dumps(to_node_link(g))
    assert "Patient/a" not in text and '"a"' not in text and "1950-02-03" not in text
    # dates move back by one whole-day offset for the patient: ages and intervals survive
    real = patient_graph(store, "a")
    shift = {m.time - n.time for n, m in zip(real.nodes, g.nodes, strict=True) if n.time is not None}
    assert len(shift) == 1 and next(iter(shift)).days < 0
    born = next(n.props["birth_date"] for n in g.nodes if n.type is NodeType.PATIENT)
    assert datetime.fromisoformat(born).date() == (datetime(1950, 2, 3) + next(iter(shift))).date()
    assert deidentify(patient_graph(store, "a"), salt="s3cret").nodes[0].id == g.nodes[0].id  # stable for a salt
