"""Record integrity over real HTTP (issue 16): ownership conflicts, incomplete records, unknown patients.

Every attack of :mod:`tests.record_attacks` is sent to the live server after its setup records;
it must be refused with the documented status, the problem must name the resource and field,
the whole request must roll back, and no other patient's records may change.
"""

from __future__ import annotations

import io
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from graph import open_store
from tests.api.conftest import LiveServer
from tests.api.helpers import FHIR_JSON, assert_problem
from tests.record_attacks import ATTACKS, bundle, fresh, glucose, patient, uid


def _graph(live: LiveServer, pid: str) -> dict[str, Any] | None:
    """The patient's full graph as the API serves it (``None`` when the patient does not exist)."""
    with live.client("reader") as c:
        r = c.get(f"/v1/patients/{pid}/graph")
    if r.status_code == 404:
        return None
    assert r.status_code == 200, r.text
    return r.json()


def _pending(live: LiveServer) -> int:
    with open_store(live.settings.store) as st:
        return st.counts().pending_edges


@pytest.mark.parametrize("name", list(ATTACKS))
def test_attack_is_refused_and_changes_nothing(live: LiveServer, name: str) -> None:
    atk = fresh(name)
    with live.client("writer") as c:
        for b in atk.setup:
            r = c.post("/v1/records", json=b)
            assert r.status_code == 201, r.text
        before = {p: _graph(live, p) for p in atk.victims}
        pending = _pending(live)
        r = c.post("/v1/records", content=json.dumps(atk.attack), headers=FHIR_JSON)
    doc = assert_problem(r, atk.status)
    assert doc["record"]["resource"] == atk.resource, doc
    assert doc["record"].get("field") == atk.field, doc
    assert atk.resource in doc["detail"]
    if atk.reason:
        assert atk.reason in doc["detail"], doc["detail"]
    if atk.status == 409:
        assert doc["type"].endswith("/conflict")
    for p, g in before.items():
        assert g is not None and _graph(live, p) == g, f"patient {p} changed"
    for p in atk.absent:
        assert _graph(live, p) is None, f"patient {p} was stored"
    assert _pending(live) == pending  # no edge left waiting for a patient that never comes


def test_cross_patient_overwrite_leaves_owner_timeline_intact(live: LiveServer) -> None:
    """The attack as reported: B's bundle reuses the id of A's lab; A keeps value, date and owner."""
    atk = fresh("cross-patient-observation")
    a, b = atk.victims[0], atk.absent[0]
    with live.client("writer") as c:
        assert c.post("/v1/records", json=atk.setup[0]).status_code == 201
        r = c.post("/v1/records", json=atk.attack)
        assert_problem(r, 409)
    with live.client("reader") as c:
        tl = c.get(f"/v1/patients/{a}/timeline").json()
        assert [(n["id"], n["value"], n["time"], n["patient_id"]) for n in tl["nodes"]] == [
            (atk.resource, 90.0, "2020-01-01T08:00:00Z", a)]
        assert_problem(c.get(f"/v1/patients/{b}"), 404)


def test_same_patient_resend_is_idempotent_and_complete_change_replaces(live: LiveServer) -> None:
    a = uid("same")
    first = bundle(patient(a), glucose(f"{a}-g", a))
    with live.client("writer") as c:
        assert c.post("/v1/records", json=first).status_code == 201
        again = c.post("/v1/records", json=first)
        assert again.status_code == 201
        assert (again.json()["nodes_added"], again.json()["nodes_updated"]) == (0, 0)
        changed = c.post("/v1/records", json=bundle(glucose(f"{a}-g", a, value=101.0)))
        assert changed.status_code == 201, changed.text
        assert (changed.json()["nodes_added"], changed.json()["nodes_updated"]) == (0, 1)
    with live.client("reader") as c:
        assert [n["value"] for n in c.get(f"/v1/patients/{a}/timeline").json()["nodes"]] == [101.0]


def test_two_patients_claiming_one_id_in_one_request_conflict(live: LiveServer) -> None:
    a, b = uid("dup-a"), uid("dup-b")
    oid = f"{a}-g"
    with live.client("writer") as c:
        r = c.post("/v1/records", json=bundle(patient(a), patient(b), glucose(oid, a), glucose(oid, b)))
        doc = assert_problem(r, 409)
        assert doc["record"]["resource"] == f"Observation/{oid}"
        files = [("files", ("a.json", json.dumps(bundle(patient(a), glucose(oid, a))), "application/json")),
                 ("files", ("b.json", json.dumps(bundle(patient(b), glucose(oid, b))), "application/json"))]
        doc = assert_problem(c.post("/v1/records", files=files), 409)
        assert doc["record"]["resource"] == f"Observation/{oid}"
    assert _graph(live, a) is None and _graph(live, b) is None


def test_image_for_unknown_patient_is_refused(live: LiveServer) -> None:
    import numpy as np

    ghost = uid("no-such-patient")
    buf = io.BytesIO()
    np.save(buf, np.arange(64, dtype=np.float32).reshape(8, 8))
    files = [("files", ("scan.npy", buf.getvalue(), "application/octet-stream"))]
    pending = _pending(live)
    with live.client("writer") as c:
        doc = assert_problem(c.post("/v1/records", files=files,
                                    data={"patient_id": ghost, "time": "2020-02-01T00:00:00Z"}), 422)
    assert doc["record"]["field"] == "patient_id" and doc["record"]["file"] == "scan.npy"
    assert ghost in doc["detail"]
    assert _graph(live, ghost) is None and _pending(live) == pending


def test_response_counts_stored_and_skipped_separately(live: LiveServer) -> None:
    a = uid("counts")
    claim = {"resourceType": "Claim", "id": f"{a}-claim", "patient": {"reference": f"Patient/{a}"}}
    cancelled = {**glucose(f"{a}-x", a), "status": "cancelled"}
    with live.client("writer") as c:
        r = c.post("/v1/records", json=bundle(patient(a), glucose(f"{a}-g", a), claim, cancelled))
    assert r.status_code == 201, r.text
    doc = r.json()
    assert doc["resources"] == 4 and doc["stored"] == 2
    assert doc["skipped"] == {"Claim": 1, "Observation(cancelled)": 1}
    assert doc["resources"] == doc["stored"] + sum(doc["skipped"].values())


def test_concurrent_uploads_change_no_other_patient(live: LiveServer) -> None:
    """8 writers x 100 uploads: each re-sends its own patient or tries to take over a neighbour's lab."""
    owners = [uid(f"cc{i}") for i in range(8)]
    with live.client("writer") as c:
        for p in owners:
            assert c.post("/v1/records", json=bundle(patient(p), glucose(f"{p}-g", p))).status_code == 201
    before = {p: _graph(live, p) for p in owners}
    lock = threading.Lock()
    seen: dict[int, int] = {}

    def worker(i: int) -> None:
        me, other = owners[i], owners[(i + 1) % len(owners)]
        mine = json.dumps(bundle(patient(me), glucose(f"{me}-g", me)))
        hostile = json.dumps(bundle(glucose(f"{other}-g", me, value=500.0, when="2022-01-01T00:00:00Z")))
        with live.client("writer") as c:
            for k in range(100):
                body, want = (hostile, 409) if k % 2 else (mine, 201)
                r = c.post("/v1/records", content=body, headers=FHIR_JSON)
                assert r.status_code == want, r.text
                if want == 201:
                    assert r.json()["nodes_added"] == 0 and r.json()["nodes_updated"] == 0
                with lock:
                    seen[r.status_code] = seen.get(r.status_code, 0) + 1

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(worker, range(8)))
    assert seen == {201: 400, 409: 400}
    assert {p: _graph(live, p) for p in owners} == before


def test_namespaces_keep_two_sources_that_reuse_ids_apart(live: LiveServer) -> None:
    pid, ns1, ns2 = uid("shared-id"), uid("ehr"), uid("ehr")
    with live.client("writer") as c:
        for ns, value in ((ns1, 90.0), (ns2, 250.0)):
            r = c.post("/v1/records", params={"namespace": ns}, json=bundle(patient(pid), glucose("o1", pid, value)))
            assert r.status_code == 201, r.text
            assert r.json()["patients"] == [f"{ns}:{pid}"]
        assert_problem(c.post("/v1/records", params={"namespace": "no spaces"}, json=bundle(patient(pid))), 422)
    for ns, value in ((ns1, 90.0), (ns2, 250.0)):
        g = _graph(live, f"{ns}:{pid}")
        assert g is not None and [n["value"] for n in g["nodes"] if n["type"] == "Lab"] == [value]
