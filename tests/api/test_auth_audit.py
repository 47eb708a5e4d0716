"""Credentials (401/403/429), audit lines without payload, and no patient data in logs."""

from __future__ import annotations

import json
import logging
import uuid
from pathlib import Path

import httpx
import pytest

from api.security import KeyStore
from tests.api.conftest import LiveServer, make_settings, start_server
from tests.api.helpers import assert_problem, tiny_bundle


def _audit_lines(live: LiveServer) -> list[dict]:
    return [json.loads(x) for x in Path(live.settings.audit_log).read_text().splitlines()]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/patients/p1"),
        ("GET", "/v1/patients/p1/timeline"),
        ("GET", "/v1/patients/p1/graph"),
        ("POST", "/v1/query"),
        ("POST", "/v1/records"),
        ("POST", "/v1/cypher"),
    ],
)
def test_missing_and_wrong_credentials_are_401(live: LiveServer, method: str, path: str) -> None:
    with httpx.Client(base_url=live.url) as c:
        doc = assert_problem(c.request(method, path), 401)
        assert "API key" in doc["detail"]
        for token in ("nonsense", "twk_0000_abc", live.tokens["admin"][:-2] + "xx", live.tokens["revoked"]):
            r = c.request(method, path, headers={"Authorization": f"Bearer {token}"})
            assert_problem(r, 401)
            assert r.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    ("role", "method", "path", "body"),
    [
        ("writer", "GET", "/v1/patients/p1", None),
        ("sim", "POST", "/v1/query", {"predicate": {"has_condition": "1"}}),
        ("reader", "POST", "/v1/records", {"resourceType": "Bundle", "type": "collection", "entry": []}),
    ],
)
def test_insufficient_scope_is_403(live: LiveServer, role: str, method: str, path: str, body: dict | None) -> None:
    with live.client(role) as c:
        doc = assert_problem(c.request(method, path, json=body), 403)
    assert "scope" in doc["detail"]


def test_admin_has_every_scope(live: LiveServer) -> None:
    with live.client("admin") as c:
        assert c.post("/v1/query", json={"predicate": {"has_condition": "1"}}).status_code == 200


def test_audit_records_reads_and_denials_without_payload(live: LiveServer) -> None:
    pid = f"au-{uuid.uuid4().hex[:8]}"
    with live.client("writer") as c:
        assert c.post("/v1/records", json=tiny_bundle(pid)).status_code == 201
    with live.client("reader") as c:
        assert c.get(f"/v1/patients/{pid}/timeline", params={"as_of": "2020-06-01T00:00:00Z"}).status_code == 200
    with live.client("writer") as c:  # no graph:read
        assert c.get(f"/v1/patients/{pid}").status_code == 403
    with httpx.Client(base_url=live.url) as c:
        assert c.get(f"/v1/patients/{pid}/graph").status_code == 401
    lines = [e for e in _audit_lines(live) if e["patient_id"] == pid]
    seen = {(e["action"], e["key_id"], e["status"]) for e in lines}
    assert ("records.write", live.key_ids["writer"], 201) in seen
    assert ("patient.timeline", live.key_ids["reader"], 200) in seen
    assert ("patient.read", live.key_ids["writer"], 403) in seen
    assert ("patient.graph", None, 401) in seen
    for e in lines:
        assert set(e) == {"time", "request_id", "key_id", "action", "patient_id", "method", "route", "status"}
        assert "{patient_id}" in e["route"] or e["route"] in ("/v1/records", "/v1/query")
    text = Path(live.settings.audit_log).read_text()
    assert "2339-0" not in text and "90.0" not in text and "2020-06-01" not in text  # no payload, no query


def test_rate_limit_is_429_per_key(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, rate_limit_per_minute=1.0, rate_limit_burst=3)
    keys = KeyStore(settings.keys_db)
    a, b = keys.create("a", ["graph:read"]), keys.create("b", ["graph:read"])
    keys.close()
    server, thread, url = start_server(settings)
    try:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {a.token}"}) as c:
            codes = [c.post("/v1/query", json={"predicate": {"has_condition": "1"}}).status_code for _ in range(5)]
            r = c.post("/v1/query", json={"predicate": {"has_condition": "1"}})
        assert codes == [200, 200, 200, 429, 429]
        assert_problem(r, 429)
        assert int(r.headers["retry-after"]) >= 1
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {b.token}"}) as c:  # own bucket
            assert c.post("/v1/query", json={"predicate": {"has_condition": "1"}}).status_code == 200
    finally:
        server.should_exit = True  # type: ignore[attr-defined]
        thread.join(timeout=10)


def test_access_log_has_no_patient_ids_or_query_strings(live: LiveServer) -> None:
    records: list[str] = []

    class Grab(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    handler = Grab()
    loggers = [logging.getLogger(n) for n in ("api", "uvicorn", "uvicorn.access", "uvicorn.error")]
    for lg in loggers:
        lg.addHandler(handler)
    pid = f"secret-{uuid.uuid4().hex[:8]}"
    try:
        with live.client("writer") as c:
            c.post("/v1/records", json=tiny_bundle(pid))
        with live.client("reader") as c:
            c.get(f"/v1/patients/{pid}/timeline", params={"as_of": "2021-02-03T04:05:06Z"})
            c.get(f"/v1/patients/{pid}", params={"as_of": "not-a-date"})
    finally:
        for lg in loggers:
            lg.removeHandler(handler)
    assert any("/v1/patients/{patient_id}/timeline 200" in m for m in records), records
    joined = "\n".join(records)
    assert pid not in joined and "2021-02-03" not in joined and "not-a-date" not in joined


def test_cors_closed_by_default(live: LiveServer) -> None:
    with httpx.Client(base_url=live.url) as c:
        r = c.options("/v1/query", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
        g = c.get("/healthz", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in r.headers
    assert "access-control-allow-origin" not in g.headers
