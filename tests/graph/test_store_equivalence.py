"""Differential property test: random write sequences leave the in-memory reference store and
each real store (SQLite, Neo4j) in the same state, with the same stats, errors and answers.

Batches mix valid and schema-violating edges, edges to nodes that arrive later (pending),
updates, re-typed nodes and duplicate ids, over a small id universe so they collide often.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from graph.predicates import CarriesVariant, HasCondition, LabValue, OnMedication, Predicate
from graph.schema import EDGE_TYPES, Edge, GraphBatch, Node, NodeType, Rel
from graph.store.base import GraphStore, NodeQuery
from graph.store.memory import MemoryStore
from graph.store.sqlite import SQLiteStore

IDS: dict[NodeType, list[str]] = {t: [f"{t.value}/{i}" for i in range(3)] for t in NodeType}
ALL_IDS = [i for ids in IDS.values() for i in ids]
PATIENTS = ["0", "1", "2", None]
CODES = ["a", "b", None]
TIMES = [None, *(datetime(2019 + y, m, 1, 12, 30, 5, tzinfo=UTC) for y in (0, 1) for m in (1, 7))]
AS_OFS = [None, datetime(2019, 6, 1, tzinfo=UTC), datetime(2020, 12, 31, tzinfo=UTC)]
PREDICATES: list[Predicate] = [
    HasCondition("a"), HasCondition("a", system="s"), LabValue("a", ">", 1.0), LabValue("b", "<=", 2.5),
    OnMedication("a"), CarriesVariant("1"), HasCondition("a") & ~OnMedication("b"), LabValue("a", ">=", 0.0) | CarriesVariant("0"),
]

nodes = st.builds(
    lambda t, i, retype, pid, time, end, code, system, value, props: Node(
        IDS[t][i], retype or t, patient_id=pid, time=time, end=end, code=code, system=system, value=value, props=props),
    st.sampled_from(list(NodeType)), st.integers(0, 2), st.none() | st.sampled_from(list(NodeType)),
    st.sampled_from(PATIENTS), st.sampled_from(TIMES), st.sampled_from(TIMES), st.sampled_from(CODES),
    st.sampled_from([None, "s"]), st.none() | st.sampled_from([0.0, 1.0, 2.5, 7]),
    st.dictionaries(st.sampled_from(["k", "n"]), st.integers(0, 3) | st.lists(st.integers(0, 3), max_size=2), max_size=2),
)
typed_edges = st.builds(  # endpoints of the triple's types: valid unless a node was re-typed
    lambda triple, i, j, pid, props: Edge(IDS[triple[0]][i], triple[1], IDS[triple[2]][j], pid, props),
    st.sampled_from(EDGE_TYPES), st.integers(0, 2), st.integers(0, 2), st.sampled_from(PATIENTS),
    st.dictionaries(st.just("w"), st.integers(0, 2), max_size=1),
)
any_edges = st.builds(lambda s, r, d: Edge(s, r, d), st.sampled_from(ALL_IDS), st.sampled_from(list(Rel)),
                      st.sampled_from(ALL_IDS))
batches = st.builds(GraphBatch, st.lists(nodes, max_size=4),
                    st.lists(st.one_of(typed_edges, typed_edges, typed_edges, any_edges), max_size=4))


def _state(store: GraphStore) -> tuple[object, ...]:
    return store.counts(), store.find_nodes(NodeQuery()), store.find_edges(), store.pending_edges(), store.patient_ids()


def _answers(store: GraphStore) -> list[object]:
    out: list[object] = []
    for as_of in AS_OFS:
        out += [store.cohort(p, as_of) for p in PREDICATES]
        out.append(store.cohort(LabValue("a", ">", 0.5, within_days=400), as_of) if as_of else None)
        out.append(store.find_nodes(NodeQuery(patient_id="1", types=(NodeType.LAB, NodeType.MEDICATION), as_of=as_of)))
        out.append(store.find_nodes(NodeQuery(codes=("a",), start=TIMES[1], end=TIMES[3], as_of=as_of, limit=3)))
    out.append(store.find_edges(node_ids=IDS[NodeType.PATIENT], rels=[Rel.HAS_LAB, Rel.CARRIES]))
    out.append(store.find_edges(patient_id="0"))
    out.append(sorted(store.get_nodes(ALL_IDS), key=lambda n: n.id))  # in no particular order
    return out


def _apply_in_lockstep(real: GraphStore, sequence: list[GraphBatch]) -> None:
    reference = MemoryStore()
    for batch in sequence:
        outcomes = []
        for store in (reference, real):
            try:
                outcomes.append(store.write(batch))
            except Exception as exc:  # noqa: BLE001 - the error type must agree
                outcomes.append(type(exc))
        assert outcomes[0] == outcomes[1], batch
        assert _state(real) == _state(reference)
    assert _answers(real) == _answers(reference)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sequence=st.lists(batches, min_size=1, max_size=6))
def test_sqlite_matches_the_reference_store(tmp_path_factory: pytest.TempPathFactory, sequence: list[GraphBatch]) -> None:
    with SQLiteStore(tmp_path_factory.mktemp("eq") / "store.db") as real:
        _apply_in_lockstep(real, sequence)


@pytest.mark.neo4j
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sequence=st.lists(batches, min_size=1, max_size=5))
def test_neo4j_matches_the_reference_store(neo4j_store: GraphStore, sequence: list[GraphBatch]) -> None:
    neo4j_store.wipe()  # type: ignore[attr-defined]
    _apply_in_lockstep(neo4j_store, sequence)

