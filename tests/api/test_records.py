"""``POST /v1/records`` over real HTTP: formats, idempotence, atomic failure, concurrency."""

from __future__ import annotations

import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.api.conftest import LiveServer
from tests.api.helpers import FHIR_JSON, assert_problem, load, patient_id_of, tiny_bundle


def _counts(live: LiveServer, pid: str) -> dict[str, int]:
    with live.client("reader") as c:
        r = c.get(f"/v1/patients/{pid}")
    return r.json()["counts"] if r.status_code == 200 else {}


def test_ingest_synthea_bundle_then_repeat_is_idempotent(live: LiveServer, bundle_path: Path) -> None:
    body = bundle_path.read_bytes()
    pid = patient_id_of(load(bundle_path))
    with live.client("writer") as c:
        first = c.post("/v1/records", content=body, headers=FHIR_JSON)
        assert first.status_code == 201, first.text
        doc = first.json()
        assert doc["patients"] == [pid]
        assert doc["resources"] > 50
        assert doc["nodes_by_type"]["Patient"] == 1 and doc["nodes_by_type"]["Lab"] > 0
        again = c.post("/v1/records", content=body, headers=FHIR_JSON)
    assert again.status_code == 201
    assert again.json()["nodes_added"] == 0 and again.json()["edges_added"] == 0
    assert again.json()["nodes_by_type"] == doc["nodes_by_type"]


def test_ingest_ndjson(live: LiveServer) -> None:
    pid = f"nd-{uuid.uuid4().hex[:8]}"
    lines = "\n".join(json.dumps(e["resource"]) for e in tiny_bundle(pid, n_obs=3)["entry"])
    with live.client("writer") as c:
        r = c.post("/v1/records", content=lines, headers={"Content-Type": "application/fhir+ndjson"})
    assert r.status_code == 201, r.text
    assert r.json()["nodes_by_type"] == {"Concept": 1, "Lab": 3, "Patient": 1}
    assert _counts(live, pid) == {"Lab": 3, "Patient": 1}


def test_ingest_multipart_json_and_ndjson_files(live: LiveServer) -> None:
    a, b = f"mp-{uuid.uuid4().hex[:8]}", f"mp-{uuid.uuid4().hex[:8]}"
    nd = "\n".join(json.dumps(e["resource"]) for e in tiny_bundle(b)["entry"])
    files = [
        ("files", ("a.json", json.dumps(tiny_bundle(a)), "application/fhir+json")),
        ("files", ("b.ndjson", nd, "application/fhir+ndjson")),
    ]
    with live.client("writer") as c:
        r = c.post("/v1/records", files=files)
    assert r.status_code == 201, r.text
    assert r.json()["patients"] == sorted([a, b])


def test_bad_resource_names_it_and_writes_nothing(live: LiveServer) -> None:
    pid = f"bad-{uuid.uuid4().hex[:8]}"
    with live.client("writer") as c:
        r = c.post("/v1/records", json=tiny_bundle(pid, n_obs=5, bad_obs=3))
    doc = assert_problem(r, 422)
    assert doc["record"]["resource"] and f"{pid}-obs-3" in doc["record"]["resource"]
    assert doc["record"]["field"] and "valueQuantity" in doc["record"]["field"]
    with live.client("reader") as c:
        assert_problem(c.get(f"/v1/patients/{pid}"), 404)  # the good patient/observations did not land either


def test_failed_multipart_writes_no_part(live: LiveServer) -> None:
    good, bad = f"g-{uuid.uuid4().hex[:8]}", f"b-{uuid.uuid4().hex[:8]}"
    files = [
        ("files", ("good.json", json.dumps(tiny_bundle(good)), "application/json")),
        ("files", ("bad.json", json.dumps(tiny_bundle(bad, bad_obs=0)), "application/json")),
    ]
    with live.client("writer") as c:
        r = c.post("/v1/records", files=files)
    doc = assert_problem(r, 422)
    assert doc["record"]["file"] == "bad.json"
    with live.client("reader") as c:
        assert_problem(c.get(f"/v1/patients/{good}"), 404)


def test_malformed_json_and_wrong_resource_type(live: LiveServer) -> None:
    with live.client("writer") as c:
        doc = assert_problem(c.post("/v1/records", content=b'{"resourceType": "Bundle", ', headers=FHIR_JSON), 422)
        assert "invalid JSON" in doc["detail"]
        doc = assert_problem(c.post("/v1/records", json={"resourceType": "Patient", "id": "x"}), 422)
        assert doc["record"]["field"] == "resourceType"
        assert_problem(c.post("/v1/records", content=b"\xff\xfe", headers=FHIR_JSON), 422)


def test_unsupported_media_type(live: LiveServer) -> None:
    with live.client("writer") as c:
        doc = assert_problem(c.post("/v1/records", content=b"hello", headers={"Content-Type": "text/plain"}), 415)
    assert "text/plain" in doc["detail"]


def test_payload_too_large(live: LiveServer) -> None:
    big = b" " * (live.settings.max_request_bytes + 1)
    with live.client("writer") as c:
        assert_problem(c.post("/v1/records", content=big, headers=FHIR_JSON), 413)

        def chunks():  # no Content-Length: the limit applies while streaming
            for _ in range(live.settings.max_request_bytes // 65536 + 2):
                yield b" " * 65536

        assert_problem(c.post("/v1/records", content=chunks(), headers=FHIR_JSON), 413)


def test_concurrent_ingests_all_land(live: LiveServer) -> None:
    pids = [f"cc-{uuid.uuid4().hex[:8]}" for _ in range(16)]

    def post(pid: str) -> int:
        with live.client("writer") as c:
            return c.post("/v1/records", json=tiny_bundle(pid, n_obs=4)).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert list(pool.map(post, pids)) == [201] * len(pids)
    for pid in pids:
        assert _counts(live, pid) == {"Lab": 4, "Patient": 1}


def test_multipart_image_and_vcf(live: LiveServer, tmp_path: Path) -> None:
    import io

    import numpy as np

    pid = f"mm-{uuid.uuid4().hex[:8]}"
    buf = io.BytesIO()
    np.save(buf, np.arange(64, dtype=np.float32).reshape(8, 8))
    vcf = (
        "##fileformat=VCFv4.2\n"
        '##INFO=<ID=GENE,Number=1,Type=String,Description="Gene">\n'
        "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tSAMPLE\n"
        "10\t94781859\trs4244285\tG\tA\t.\tPASS\tGENE=CYP2C19\tGT\t0/1\n"
    )
    files = [
        ("files", ("bundle.json", json.dumps(tiny_bundle(pid, n_obs=1)), "application/fhir+json")),
        ("files", ("scan.npy", buf.getvalue(), "application/octet-stream")),
        ("files", ("sample.vcf", vcf, "text/plain")),
    ]
    data = {"patient_id": pid, "time": "2020-02-01T00:00:00Z"}
    with live.client("writer") as c:
        r = c.post("/v1/records", files=files, data=data)
        again = c.post("/v1/records", files=files, data=data)
    assert r.status_code == 201, r.text
    assert r.json()["nodes_by_type"]["Image"] == 1 and r.json()["nodes_by_type"]["Variant"] == 1
    assert again.json()["nodes_added"] == 0  # content-addressed image: the same upload is the same node
    with live.client("reader") as c:
        counts = c.get(f"/v1/patients/{pid}").json()["counts"]
        assert counts["Image"] == 1 and counts["Variant"] == 1
        with live.client("writer") as w:  # an image without a patient is refused and names the field
            doc = assert_problem(w.post("/v1/records", files=[files[1]]), 422)
    assert doc["record"]["field"] == "patient_id" and doc["record"]["file"] == "scan.npy"
