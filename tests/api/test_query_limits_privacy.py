"""Issue 16 attacks over real HTTP: predicate limits, de-identification, server paths, rejected
uploads, the 429 wait and the audit of cohort queries.

Each test reproduces one reported attack against the live server (``tests/api/conftest.py``).
"""

from __future__ import annotations

import io
import json
import re
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from api.security import KeyStore
from graph import MAX_PREDICATE_DEPTH, MAX_PREDICATE_TERMS, ingest_paths, open_store, patient_graph
from tests.api.conftest import LiveServer, make_settings, start_server
from tests.api.helpers import assert_problem, tiny_bundle

LEAF = '{"has_condition": "44054006"}'


def _nested_not(depth: int) -> str:
    """A ``/v1/query`` body whose predicate is ``depth`` ``not`` around one leaf (as raw JSON text)."""
    return '{"predicate": ' + '{"not": ' * depth + LEAF + "}" * depth + "}"


def _post_raw(c: httpx.Client, body: str) -> httpx.Response:
    return c.post("/v1/query", content=body, headers={"Content-Type": "application/json"})


@pytest.fixture(scope="module")
def pid(live: LiveServer) -> str:
    pid = f"ql-{uuid.uuid4().hex[:8]}"
    with live.client("writer") as c:
        assert c.post("/v1/records", json=tiny_bundle(pid, n_obs=3)).status_code == 201
    return pid


# --------------------------------------------------------------------------- 3. query limits
def test_not_nested_past_the_limit_is_422_naming_it(live: LiveServer) -> None:
    with live.client("reader") as c:
        assert _post_raw(c, _nested_not(MAX_PREDICATE_DEPTH)).status_code == 200
        doc = assert_problem(_post_raw(c, _nested_not(11)), 422)
    assert MAX_PREDICATE_DEPTH == 10
    assert "depth" in doc["detail"] and str(MAX_PREDICATE_DEPTH) in doc["detail"]


@pytest.mark.parametrize("depth", [12, 40, 100, 250, 400, 800, 990, 1000, 2000, 20_000])
def test_any_deeper_nesting_is_4xx_never_500(live: LiveServer, depth: int) -> None:
    with live.client("reader") as c:
        r = _post_raw(c, _nested_not(depth))
    assert 400 <= r.status_code < 500, (depth, r.status_code, r.text[:300])


@pytest.mark.parametrize("op", ["all", "any"])
def test_all_or_any_past_the_term_limit_is_422_naming_it(live: LiveServer, op: str) -> None:
    leaf = {"has_condition": "44054006"}
    with live.client("reader") as c:
        assert c.post("/v1/query", json={"predicate": {op: [leaf] * MAX_PREDICATE_TERMS}}).status_code == 200
        for n in (MAX_PREDICATE_TERMS + 1, 5_000):
            doc = assert_problem(c.post("/v1/query", json={"predicate": {op: [leaf] * n}}), 422)
            assert "terms" in doc["detail"] and str(MAX_PREDICATE_TERMS) in doc["detail"]
        # the limit counts every term of the predicate, not only those of one list
        spread = {op: [{"all": [leaf] * 300}, {"any": [leaf] * 300}]}
        assert_problem(c.post("/v1/query", json={"predicate": spread}), 422)


# --------------------------------------------------------------------------- 4. de-identification, paths
@pytest.fixture(scope="module")
def imaged(live: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A synthetic patient with image files named after the patient, ingested from disk into the
    live server's store (as `twin ingest` does), so its Image nodes carry ``file``/``file_path``."""
    from synthetic.cohort import SynthConfig, generate_cohort

    root = tmp_path_factory.mktemp("imaged")
    summary = generate_cohort(SynthConfig(patients=1, years=1.0, seed=11, missing_images=0.0), root)
    pid = summary.patient_ids[0]
    assert any(pid in p.name for p in (root / "images").iterdir())
    with open_store(live.settings.store) as st:
        report = ingest_paths(st, [root / "fhir"])
        assert not report.errors
        g = patient_graph(st, pid)
    ids = {n.id for n in g.nodes if n.patient_id} | {n.id.split("/", 1)[1] for n in g.nodes if n.patient_id}
    dates = {d.date().isoformat() for n in g.nodes for d in (n.time, n.end) if d is not None}
    dates |= {str(v)[:10] for n in g.nodes for k, v in n.props.items() if k == "birth_date"}
    assert any("file_path" in n.props for n in g.nodes)
    return {"pid": pid, "root": root, "ids": ids, "dates": dates}


def test_deidentified_graph_leaks_no_id_date_or_file_name(live: LiveServer, imaged: dict) -> None:
    with live.client("reader") as c:
        r = c.get(f"/v1/patients/{imaged['pid']}/graph", params={"deidentify": "true"})
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["deidentified"] is True
    text = json.dumps(doc)
    assert imaged["pid"] not in text
    for i in imaged["ids"]:
        assert i not in text, i
    for d in imaged["dates"]:
        assert d not in text, d
    assert str(imaged["root"]) not in text and "/images/" not in text
    assert any(n["type"] == "Image" for n in doc["nodes"])
    # intervals within the patient survive the shift
    with open_store(live.settings.store) as st:
        real = sorted(n.time for n in patient_graph(st, imaged["pid"]).nodes if n.time is not None)
    shifted = sorted(n["time"] for n in doc["nodes"] if n["time"] is not None)
    from datetime import datetime

    got = [datetime.fromisoformat(s.replace("Z", "+00:00")) for s in shifted]
    assert [b - a for a, b in zip(got, got[1:], strict=False)] == [b - a for a, b in zip(real, real[1:], strict=False)]


def _server_paths(live: LiveServer) -> list[str]:
    return [str(Path(live.settings.upload_dir).resolve()), str(Path(live.settings.upload_dir)),
            str(Path(live.settings.keys_db).parent)]


def test_patient_responses_reveal_no_server_paths(live: LiveServer, imaged: dict) -> None:
    pid = f"up-{uuid.uuid4().hex[:8]}"
    buf = io.BytesIO()
    np.save(buf, np.arange(64, dtype=np.float32).reshape(8, 8) + 3)
    files = [("files", ("bundle.json", json.dumps(tiny_bundle(pid, n_obs=1)), "application/fhir+json")),
             ("files", (f"{pid}_scan.npy", buf.getvalue(), "application/octet-stream"))]
    with live.client("writer") as c:
        r = c.post("/v1/records", files=files, data={"patient_id": pid, "time": "2020-02-01T00:00:00Z"})
    assert r.status_code == 201, r.text
    with live.client("reader") as c:
        for who in (pid, imaged["pid"]):
            for suffix in ("", "/timeline", "/graph"):
                r = c.get(f"/v1/patients/{who}{suffix}")
                assert r.status_code == 200, r.text
                for p in [*_server_paths(live), str(imaged["root"])]:
                    assert p not in r.text, (suffix, p)
                assert not re.search(r'"/(tmp|home|srv|var|root|work)/', r.text), (suffix, r.text[:500])
            images = [n for n in c.get(f"/v1/patients/{who}/timeline").json()["nodes"] if n["type"] == "Image"]
            assert images and all("file_path" not in n["props"] for n in images)
            assert all("/" not in n["props"].get("file", "") for n in images)


def _upload_files(live: LiveServer) -> set[str]:
    d = Path(live.settings.upload_dir)
    return {p.name for p in d.rglob("*")} if d.exists() else set()


def test_rejected_image_uploads_leave_no_files(live: LiveServer, pid: str) -> None:
    def npy(seed: int) -> bytes:
        buf = io.BytesIO()
        np.save(buf, np.full((4, 4), seed, dtype=np.float32))
        return buf.getvalue()

    tag = uuid.uuid4().int % 10_000
    before = _upload_files(live)
    with live.client("writer") as c:
        # refused while parsing: no time for the image
        assert_problem(c.post("/v1/records", files=[("files", ("a.npy", npy(tag), "application/octet-stream"))],
                              data={"patient_id": pid}), 422)
        # refused by the store: the patient does not exist
        r = c.post("/v1/records", files=[("files", ("b.npy", npy(tag + 1), "application/octet-stream"))],
                   data={"patient_id": f"nobody-{tag}", "time": "2020-01-01T00:00:00Z"})
        assert r.status_code in (409, 422), r.text
        # refused because another part of the same upload is bad
        r = c.post("/v1/records", files=[("files", ("c.npy", npy(tag + 2), "application/octet-stream")),
                                         ("files", ("d.npy", b"not an array", "application/octet-stream"))],
                   data={"patient_id": pid, "time": "2020-01-01T00:00:00Z"})
        assert_problem(r, 422)
        # unreadable image
        assert_problem(c.post("/v1/records", files=[("files", ("e.dcm", b"garbage", "application/dicom"))],
                              data={"patient_id": pid, "time": "2020-01-01T00:00:00Z"}), 422)
    assert _upload_files(live) == before


# --------------------------------------------------------------------------- 6. 429 wait, audit, unknown patient
class _AlmostFreeLimiter:
    """A limiter that refuses with a wait well under 0.05 s (what a fast refill gives)."""

    def acquire(self, key_id: str) -> float:
        return 0.004


@pytest.fixture()
def limited(tmp_path: Path) -> Iterator[tuple[str, str]]:
    settings = make_settings(tmp_path)
    keys = KeyStore(settings.keys_db)
    token = keys.create("t", ["graph:read"]).token
    keys.close()
    server, thread, url = start_server(settings)
    app = server.config.app  # type: ignore[attr-defined]
    app.state.services.limiter = _AlmostFreeLimiter()
    try:
        yield url, token
    finally:
        server.should_exit = True  # type: ignore[attr-defined]
        assert isinstance(thread, threading.Thread)
        thread.join(timeout=10)


def test_429_names_a_real_positive_wait(limited: tuple[str, str]) -> None:
    url, token = limited
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}) as c:
        r = c.post("/v1/query", json={"predicate": {"has_condition": "1"}})
    doc = assert_problem(r, 429)
    retry_after = int(r.headers["retry-after"])
    m = re.search(r"retry in ([0-9.]+) s", doc["detail"])
    assert m, doc["detail"]
    assert float(m.group(1)) > 0 and retry_after >= 1
    assert float(m.group(1)) == retry_after  # the message and the header agree


def test_real_limiter_wait_agrees_with_retry_after(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, rate_limit_per_minute=6.0, rate_limit_burst=1)
    keys = KeyStore(settings.keys_db)
    token = keys.create("t", ["graph:read"]).token
    keys.close()
    server, thread, url = start_server(settings)
    try:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}) as c:
            assert c.post("/v1/query", json={"predicate": {"has_condition": "1"}}).status_code == 200
            r = c.post("/v1/query", json={"predicate": {"has_condition": "1"}})
        doc = assert_problem(r, 429)
        assert f"retry in {int(r.headers['retry-after'])} s" in doc["detail"]
        assert 9 <= int(r.headers["retry-after"]) <= 10
    finally:
        server.should_exit = True  # type: ignore[attr-defined]
        thread.join(timeout=10)


def test_query_audit_lists_the_returned_patients(live: LiveServer, pid: str) -> None:
    with live.client("reader") as c:
        r = c.post("/v1/query", json={"predicate": {"lab": "2339-0", "op": ">=", "value": 90}})
        none = c.post("/v1/query", json={"predicate": {"has_condition": f"never-{uuid.uuid4().hex}"}})
    assert r.status_code == 200 and none.status_code == 200
    ids = r.json()["patient_ids"]
    assert pid in ids
    lines = [json.loads(x) for x in Path(live.settings.audit_log).read_text().splitlines()]
    mine = [e for e in lines if e["request_id"] == r.headers["x-request-id"]]
    assert sorted(e["patient_id"] for e in mine) == sorted(ids)
    assert all(e["action"] == "cohort.query" and e["status"] == 200 for e in mine)
    empty = [e for e in lines if e["request_id"] == none.headers["x-request-id"]]
    assert [(e["action"], e["patient_id"]) for e in empty] == [("cohort.query", None)]  # still audited


def test_store_failure_does_not_name_the_store_file(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    keys = KeyStore(settings.keys_db)
    token = keys.create("t", ["admin"]).token
    keys.close()
    server, thread, url = start_server(settings)
    try:
        server.config.app.state.services.store.close()  # type: ignore[attr-defined]
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}) as c:
            for r in (c.get("/readyz"), c.post("/v1/query", json={"predicate": {"has_condition": "1"}})):
                assert_problem(r, 503)
                assert str(tmp_path) not in r.text and "store.db" not in r.text, r.text
    finally:
        server.should_exit = True  # type: ignore[attr-defined]
        thread.join(timeout=10)


def test_a_repeated_single_value_query_parameter_is_422_and_stores_nothing(live: LiveServer) -> None:
    """``?namespace=a&namespace=b`` used to keep the last value silently (schemathesis found it)."""
    pid = f"rep-{uuid.uuid4().hex[:8]}"
    with live.client("writer") as c:
        doc = assert_problem(c.post("/v1/records?namespace=a&namespace=b", json=tiny_bundle(pid)), 422)
        assert "namespace" in doc["detail"] and "one value" in doc["detail"]
        assert c.get(f"/v1/patients/b:{pid}").status_code in (403, 404)
        assert c.post("/v1/records?namespace=a", json=tiny_bundle(pid)).status_code == 201
