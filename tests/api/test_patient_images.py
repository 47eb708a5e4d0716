"""``GET /v1/patients/{id}/images/{node id}``: the PNG preview the viewer shows, over real HTTP."""

from __future__ import annotations

import io
import json
import struct
import uuid
import zlib

import numpy as np

from tests.api.conftest import Cohort, LiveServer
from tests.api.helpers import assert_problem, tiny_bundle


def decode_png(data: bytes) -> np.ndarray:
    """An 8-bit grey-scale, unfiltered PNG (what the service writes) as an array; checks every CRC."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, {}
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos:pos + 4])
        tag, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]
        assert struct.unpack(">I", data[pos + 8 + n:pos + 12 + n])[0] == zlib.crc32(tag + body) & 0xFFFFFFFF
        chunks[tag] = chunks.get(tag, b"") + body
        pos += 12 + n
    w, h, depth, colour = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert (depth, colour) == (8, 0) and b"IEND" in chunks
    raw = zlib.decompress(chunks[b"IDAT"])
    rows = [raw[i * (w + 1):(i + 1) * (w + 1)] for i in range(h)]
    assert all(r[0] == 0 for r in rows)
    return np.array([list(r[1:]) for r in rows], dtype=np.uint8)


def upload_image(live: LiveServer, array: np.ndarray, name: str = "scan.npy") -> tuple[str, str]:
    """A new patient with one lab and one uploaded image; returns (patient id, image node id)."""
    pid = f"img-{uuid.uuid4().hex[:8]}"
    buf = io.BytesIO()
    np.save(buf, array)
    files = [("files", ("bundle.json", json.dumps(tiny_bundle(pid, n_obs=1)), "application/fhir+json")),
             ("files", (name, buf.getvalue(), "application/octet-stream"))]
    with live.client("writer") as c:
        r = c.post("/v1/records", files=files, data={"patient_id": pid, "time": "2020-02-01T00:00:00Z"})
    assert r.status_code == 201, r.text
    with live.client("reader") as c:
        images = [n for n in c.get(f"/v1/patients/{pid}/timeline").json()["nodes"] if n["type"] == "Image"]
    assert len(images) == 1 and images[0]["pixels"] is True
    return pid, images[0]["id"]


def test_preview_is_the_image_stretched_to_its_percentiles(live: LiveServer) -> None:
    left_dark = np.zeros((6, 10), dtype=np.float32)
    left_dark[:, 5:] = 40.0
    pid, image = upload_image(live, left_dark)
    with live.client("reader") as c:
        r = c.get(f"/v1/patients/{pid}/images/{image}")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png" and "no-store" in r.headers["cache-control"]
    grey = decode_png(r.content)
    assert grey.shape == (6, 10)
    assert (grey[:, :5] == 0).all() and (grey[:, 5:] == 255).all()


def test_large_images_are_reduced_and_channels_averaged(live: LiveServer) -> None:
    rgb = np.ones((300, 200, 3), dtype=np.float32)
    rgb[150:, :, :] = 9.0  # bottom half bright in every channel
    pid, image = upload_image(live, rgb)
    with live.client("reader") as c:
        grey = decode_png(c.get(f"/v1/patients/{pid}/images/{image}").content)
    assert grey.shape == (100, 67)  # every 3rd pixel: the longest side at most 128
    assert (grey[:50] == 0).all() and (grey[50:] == 255).all()


def test_preview_errors_name_the_image(live: LiveServer, cohort: Cohort) -> None:
    pid, image = upload_image(live, np.eye(4, dtype=np.float32))
    other = cohort.patient_ids[0]
    with live.client("reader") as c:
        record_only = [n for n in c.get(f"/v1/patients/{other}/timeline").json()["nodes"] if n["type"] == "Image"]
        doc = assert_problem(c.get(f"/v1/patients/{other}/images/{image}"), 404)  # another patient's image
        assert doc["detail"] == f"patient {other!r} has no image {image!r}"
        assert_problem(c.get(f"/v1/patients/{pid}/images/ImageFile/nothing"), 404)
        lab = next(n["id"] for n in c.get(f"/v1/patients/{pid}/timeline").json()["nodes"] if n["type"] == "Lab")
        assert_problem(c.get(f"/v1/patients/{pid}/images/{lab}"), 404)  # not an image
        assert_problem(c.get(f"/v1/patients/no-such-patient/images/{image}"), 404)
        if record_only:  # the cohort's bundles reference image files that were never uploaded
            assert all(n["pixels"] is False for n in record_only)
            doc = assert_problem(c.get(f"/v1/patients/{other}/images/{record_only[0]['id']}"), 404)
            assert "no pixel file on this server" in doc["detail"]
    with live.client("sim") as c:  # needs graph:read
        assert_problem(c.get(f"/v1/patients/{pid}/images/{image}"), 403)
    with live.client(None) as c:
        assert_problem(c.get(f"/v1/patients/{pid}/images/{image}"), 401)


def test_preview_reads_are_audited_by_route_template(live: LiveServer) -> None:
    pid, image = upload_image(live, np.eye(4, dtype=np.float32))
    with live.client("reader") as c:
        assert c.get(f"/v1/patients/{pid}/images/{image}").status_code == 200
    lines = [json.loads(x) for x in live.settings.audit_log.read_text().splitlines()]
    mine = [e for e in lines if e.get("action") == "patient.image" and e.get("patient_id") == pid]
    assert len(mine) == 1 and mine[0]["key_id"] == live.key_ids["reader"]
    assert image.split("/")[-1] not in json.dumps(mine[0])  # the template, never the URL
