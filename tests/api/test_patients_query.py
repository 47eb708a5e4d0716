"""Patient reads and cohort queries over real HTTP, checked against what was ingested."""

from __future__ import annotations

import uuid

import pytest

from tests.api.conftest import LiveServer
from tests.api.helpers import assert_problem, tiny_bundle


@pytest.fixture(scope="module")
def pid(live: LiveServer) -> str:
    pid = f"pt-{uuid.uuid4().hex[:8]}"
    with live.client("writer") as c:
        assert c.post("/v1/records", json=tiny_bundle(pid, n_obs=5)).status_code == 201
    return pid


def test_summary(live: LiveServer, pid: str) -> None:
    with live.client("reader") as c:
        doc = c.get(f"/v1/patients/{pid}").json()
    assert doc["patient_id"] == pid
    assert doc["patient"]["type"] == "Patient"
    assert doc["counts"] == {"Lab": 5, "Patient": 1}
    assert doc["first_record"].startswith("2020-01-01") and doc["last_record"].startswith("2020-01-05")


def test_timeline_as_of_and_type_filter(live: LiveServer, pid: str) -> None:
    with live.client("reader") as c:
        full = c.get(f"/v1/patients/{pid}/timeline").json()
        cut = c.get(f"/v1/patients/{pid}/timeline", params={"as_of": "2020-01-03T12:00:00Z"}).json()
        labs = c.get(f"/v1/patients/{pid}/timeline", params={"type": "Lab", "start": "2020-01-02T00:00:00"}).json()
        none = c.get(f"/v1/patients/{pid}/timeline", params={"type": "Condition"}).json()
    assert full["count"] == 5 and [n["value"] for n in full["nodes"]] == [90.0, 91.0, 92.0, 93.0, 94.0]
    assert cut["count"] == 3
    assert labs["count"] == 4 and all(n["type"] == "Lab" for n in labs["nodes"])
    assert none["count"] == 0


def test_graph_export_and_deidentified(live: LiveServer, pid: str) -> None:
    with live.client("reader") as c:
        g = c.get(f"/v1/patients/{pid}/graph", params={"as_of": "2020-01-02T23:00:00Z"}).json()
        d = c.get(f"/v1/patients/{pid}/graph", params={"deidentify": "true"}).json()
    assert g["counts"] == {"Concept": 1, "Lab": 2, "Patient": 1}
    ids = {n["id"] for n in g["nodes"]}
    assert all(link["source"] in ids and link["target"] in ids for link in g["links"])
    assert d["deidentified"] is True
    assert not any(pid in n["id"] or n["patient_id"] == pid for n in d["nodes"])


def test_unknown_patient_is_404_everywhere(live: LiveServer) -> None:
    with live.client("reader") as c:
        for suffix in ("", "/timeline", "/graph"):
            doc = assert_problem(c.get(f"/v1/patients/nobody-here{suffix}"), 404)
            assert "nobody-here" in doc["detail"]


def test_bad_query_parameters_are_422(live: LiveServer, pid: str) -> None:
    with live.client("reader") as c:
        doc = assert_problem(c.get(f"/v1/patients/{pid}/timeline", params={"as_of": "yesterday"}), 422)
        assert doc["errors"][0]["location"] == "query" and doc["errors"][0]["field"] == "as_of"
        doc = assert_problem(c.get(f"/v1/patients/{pid}/timeline", params={"type": "Spaceship"}), 422)
        assert doc["errors"][0]["field"].startswith("type")
        assert_problem(c.get(f"/v1/patients/{pid}/timeline", params={"as_of": "0001-01-01T00:00:00+05:00"}), 422)


def test_cohort_query(live: LiveServer, pid: str) -> None:
    hi = {"lab": "2339-0", "op": ">=", "value": 94}
    with live.client("reader") as c:
        r = c.post("/v1/query", json={"predicate": hi})
        assert r.status_code == 200, r.text
        assert pid in r.json()["patient_ids"]
        early = c.post("/v1/query", json={"predicate": hi, "as_of": "2020-01-03T00:00:00Z"}).json()
        assert pid not in early["patient_ids"]
        low = {"lab": "2339-0", "op": "<", "value": 80}
        both = c.post("/v1/query", json={"predicate": {"all": [hi, {"not": low}]}})
        assert pid in both.json()["patient_ids"]
        doc = assert_problem(c.post("/v1/query", json={"predicate": {"lab": "2339-0", "op": "!!", "value": 1}}), 422)
        assert any("op" in e["field"] for e in doc["errors"])
        assert_problem(c.post("/v1/query", json={"predicate": {}}), 422)
        assert_problem(c.post("/v1/query", json={"predicate": {"all": []}}), 422)


def test_cypher_on_embedded_store_is_409(live: LiveServer) -> None:
    with live.client("reader") as c:
        doc = assert_problem(c.post("/v1/cypher", json={"query": "MATCH (n) RETURN count(n)"}), 409)
    assert "Neo4j" in doc["detail"]


@pytest.mark.neo4j
def test_cypher_read_only_on_neo4j(neo4j_server_uri: str, tmp_path) -> None:  # noqa: ANN001
    from api.security import KeyStore
    from graph.store.neo4j import Neo4jStore
    from tests.api.conftest import make_settings, start_server

    Neo4jStore.from_url(neo4j_server_uri).wipe()
    settings = make_settings(tmp_path, store=neo4j_server_uri)
    ks = KeyStore(settings.keys_db)
    token = ks.create("t", ["admin"]).token
    ks.close()
    server, thread, url = start_server(settings)
    try:
        import httpx

        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60) as c:
            assert c.post("/v1/records", json=tiny_bundle("neo-1", n_obs=3)).status_code == 201
            r = c.post("/v1/cypher", json={"query": "MATCH (n:Lab {patient_id: $p}) RETURN count(n) AS n",
                                           "params": {"p": "neo-1"}})
            assert r.status_code == 200, r.text
            assert r.json()["rows"] == [{"n": 3}]
            doc = assert_problem(c.post("/v1/cypher", json={"query": "MATCH (n) DETACH DELETE n"}), 422)
            assert "read" in doc["detail"].lower()
            assert c.get("/v1/patients/neo-1/timeline").json()["count"] == 3
    finally:
        server.should_exit = True  # type: ignore[attr-defined]
        thread.join(timeout=10)
