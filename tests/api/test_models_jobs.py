"""Training as a background job over real HTTP: 202 + job id, progress to a terminal state, listing."""

from __future__ import annotations

import time

import httpx

from tests.api.conftest import LiveServer
from tests.api.helpers import assert_problem


def _wait(c: httpx.Client, job_id: str, timeout_s: float = 240.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        doc = c.get(f"/v1/jobs/{job_id}").json()
        if doc["status"] in ("succeeded", "failed") or time.monotonic() > deadline:
            return doc
        time.sleep(0.2)


def test_train_job_runs_to_a_listed_model(live: LiveServer, trained_model: dict) -> None:
    assert trained_model["status"] == "succeeded", trained_model
    assert trained_model["progress"] == 1.0
    # progress advances through the training stages and never goes backwards
    fracs = [f for f, _ in trained_model["seen"]]
    assert fracs == sorted(fracs)
    assert any(0.0 < f < 1.0 for f in fracs), trained_model["seen"]
    assert trained_model["result"]["n_train_patients"] >= 2
    with live.client("sim") as c:
        r = c.get("/v1/models")
    models = r.json()
    listed = {m["name"]: m for m in models["models"]}
    assert trained_model["name"] in listed
    entry = listed[trained_model["name"]]
    # the listing names the training cohort and date, and no server path anywhere
    assert entry["cohort"]["patients"] == trained_model["result"]["n_train_patients"] + trained_model["result"][
        "n_val_patients"]
    assert entry["cohort"]["store"] == "sqlite:store.db" and entry["trained_at"]
    # the cohort specification: derived targets and treatments, the horizon the request set
    spec = entry["spec"]
    assert spec["scales"]["horizon_days"] == 180 and spec["targets"] and spec["treatments"]
    assert all(t["transform"] in ("identity", "log1p", "positive") for t in spec["targets"])
    assert trained_model["result"]["checkpoint"] == trained_model["name"]
    assert str(live.settings.model_path) not in r.text and str(live.settings.store) not in r.text
    with live.client("admin") as c:
        assert_problem(c.post("/v1/models", json={"name": trained_model["name"], "epochs": 1}), 409)
        assert c.get("/v1/jobs").json()["count"] >= 1


def test_training_on_too_few_patients_fails_honestly(tmp_path, live: LiveServer) -> None:  # noqa: ANN001
    from api.security import KeyStore
    from tests.api.conftest import make_settings, start_server

    settings = make_settings(tmp_path)
    ks = KeyStore(settings.keys_db)
    token = ks.create("t", ["admin"]).token
    ks.close()
    server, thread, url = start_server(settings)
    try:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}) as c:
            r = c.post("/v1/models", json={"name": "empty", "epochs": 1, "members": 1})
            assert r.status_code == 202, r.text
            doc = _wait(c, r.json()["id"], 60)
    finally:
        server.should_exit = True  # type: ignore[attr-defined]
        thread.join(timeout=10)
    assert doc["status"] == "failed" and "at least 2 patients" in doc["error"]


def test_job_errors(live: LiveServer) -> None:
    with live.client("admin") as c:
        assert_problem(c.get("/v1/jobs/does-not-exist"), 404)
        doc = assert_problem(c.post("/v1/models", json={"name": "../etc", "epochs": 1}), 422)
        assert doc["errors"][0]["field"] == "name"
        assert_problem(c.post("/v1/models", json={"epochs": 0}), 422)
        doc = assert_problem(c.post("/v1/models", json={"name": "x", "spec": {"transforms": {"a": "sqrt"}}}), 422)
        assert "transforms" in doc["detail"] or "sqrt" in doc["detail"]
    with live.client("sim") as c:
        assert_problem(c.post("/v1/models", json={"name": "x"}), 403)
        assert_problem(c.get("/v1/jobs/x"), 404)
        assert_problem(c.delete("/v1/jobs/x"), 404)
    with live.client("reader") as c:
        assert_problem(c.get("/v1/models"), 403)
        assert_problem(c.get("/v1/jobs/x"), 403)


def test_jobs_are_visible_to_their_owner_and_admins_only(live: LiveServer, trained_model: dict) -> None:
    """The training job belongs to the admin key: a sim:run key neither sees nor cancels it."""
    with live.client("sim") as c:
        assert trained_model["id"] not in {j["id"] for j in c.get("/v1/jobs").json()["jobs"]}
        assert_problem(c.get(f"/v1/jobs/{trained_model['id']}"), 404)
        assert_problem(c.delete(f"/v1/jobs/{trained_model['id']}"), 404)
    with live.client("admin") as c:
        assert c.get(f"/v1/jobs/{trained_model['id']}").status_code == 200
        assert "finished" in assert_problem(c.delete(f"/v1/jobs/{trained_model['id']}"), 409)["type"]


def test_options_lists_every_method_of_the_path(live: LiveServer) -> None:
    with live.client("admin") as c:
        r = c.options("/v1/models")
        assert r.status_code == 405
        assert {m.strip() for m in r.headers["allow"].split(",")} >= {"GET", "POST"}
        r = c.request("PUT", "/v1/jobs/x")
        assert r.status_code == 405 and {m.strip() for m in r.headers["allow"].split(",")} >= {"GET", "DELETE"}
