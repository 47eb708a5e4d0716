"""Health, readiness, unknown routes and the OpenAPI document's error documentation."""

from __future__ import annotations

import httpx

from tests.api.conftest import LiveServer
from tests.api.helpers import PROBLEM, assert_problem


def test_health_and_ready(live: LiveServer) -> None:
    with httpx.Client(base_url=live.url) as c:
        h, r = c.get("/healthz"), c.get("/readyz")
    assert h.status_code == 200 and h.json()["status"] == "ok"
    assert r.status_code == 200 and r.json() == {"status": "ready", "store": "embedded"}
    assert "x-request-id" in h.headers and "server" not in h.headers


def test_unknown_route_and_method_are_problems(live: LiveServer) -> None:
    with httpx.Client(base_url=live.url) as c:
        assert_problem(c.get("/v1/nothing"), 404)
        r = c.delete("/v1/query")
    assert_problem(r, 405)
    assert "POST" in r.headers["allow"]


def test_every_error_response_is_a_documented_problem(live: LiveServer) -> None:
    doc = httpx.get(f"{live.url}/openapi.json").json()
    assert "Problem" in doc["components"]["schemas"]
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    for path, item in doc["paths"].items():
        for method, op in item.items():
            codes = set(op["responses"])
            if path.startswith("/v1/"):
                assert {"401", "403", "429"} <= codes, (method, path)
                assert op["security"], (method, path)
            if "requestBody" in op:
                assert {"413", "422"} <= codes, (method, path)
            for code, resp in op["responses"].items():
                if code[0] in "45":
                    assert list(resp["content"]) == [PROBLEM], (method, path, code)
