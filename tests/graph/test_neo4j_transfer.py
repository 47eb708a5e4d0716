"""Neo4j: moving whole stores embedded → Neo4j → embedded, and ingesting straight into Neo4j."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from core.errors import StoreError
from graph.schema import Edge, GraphBatch, Rel
from graph.store.base import GraphStore, NodeQuery
from graph.store.sqlite import SQLiteStore
from graph.store.transfer import copy_store
from tests.graph.store_samples import cohort_batch, every_type_batch, t

pytestmark = pytest.mark.neo4j

SYNTHEA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "external" / "synthea-fhir"


def _state(store: GraphStore) -> tuple[object, ...]:
    pending = store.pending_edges()  # type: ignore[attr-defined]
    return store.counts(), store.find_nodes(NodeQuery()), store.find_edges(), pending


def _round_trip(src: SQLiteStore, neo: GraphStore, back: SQLiteStore) -> None:
    there = copy_store(src, neo)
    assert _state(neo) == _state(src)
    again = copy_store(neo, back)
    assert again == there
    assert _state(back) == _state(src)


def test_round_trip_keeps_every_field_and_pending_edge(
    neo4j_store: GraphStore, sqlite_store_factory: Callable[[], SQLiteStore]
) -> None:
    src = sqlite_store_factory()
    src.write(every_type_batch())
    src.write(cohort_batch("b", [(t(2019), 7.5)], "44054006", (t(2019), t(2020)), "APOE"))
    src.write(GraphBatch(edges=[Edge("Observation/l1", Rel.NEXT, "Observation/later", "p1", {"gap_days": 3})]))
    assert src.counts().pending_edges == 1
    _round_trip(src, neo4j_store, sqlite_store_factory())


def test_copy_refuses_a_non_empty_destination(neo4j_store: GraphStore, sqlite_store_factory: Callable[[], SQLiteStore]) -> None:
    src = sqlite_store_factory()
    src.write(every_type_batch())
    neo4j_store.write(cohort_batch("z", [], None, None, None))
    with pytest.raises(StoreError, match="not empty"):
        copy_store(src, neo4j_store)
    assert neo4j_store.patient_ids() == ["z"]


def _bundles(n: int | None) -> list[Path]:
    files = sorted(SYNTHEA.glob("*.json"))
    if not files:
        pytest.fail(f"external Synthea bundles not found under {SYNTHEA}")
    return files[:n] if n else files


def test_synthea_round_trip_is_lossless(neo4j_store: GraphStore, sqlite_store_factory: Callable[[], SQLiteStore]) -> None:
    from graph.ingest import ingest_paths

    src = sqlite_store_factory()
    ingest_paths(src, _bundles(4))
    assert src.counts().total_nodes > 500
    _round_trip(src, neo4j_store, sqlite_store_factory())


@pytest.mark.slow
def test_all_synthea_bundles_ingest_identically_and_round_trip(
    neo4j_store: GraphStore, sqlite_store_factory: Callable[[], SQLiteStore]
) -> None:
    from graph.ingest import ingest_paths

    files = _bundles(None)
    embedded = sqlite_store_factory()
    ingest_paths(embedded, files)
    ingest_paths(neo4j_store, files)  # straight into Neo4j: same graph as the embedded ingest
    assert _state(neo4j_store) == _state(embedded)
    neo4j_store.wipe()
    _round_trip(embedded, neo4j_store, sqlite_store_factory())
