"""A real server for the API tests: uvicorn on a free loopback port, a temp store and key file.

The app is started exactly as ``twin serve`` starts it (:func:`api.uvicorn_config`), in a
background thread, and the tests talk to it over HTTP with httpx.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from api import Settings, create_app, uvicorn_config
from api.security import KeyStore
from tests.conftest import missing_requirement

EXTERNAL = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "external"
SYNTHEA = EXTERNAL / "synthea-fhir"


@dataclass
class LiveServer:
    """A running server: its base URL, settings and one token per role."""

    url: str
    settings: Settings
    tokens: dict[str, str]
    key_ids: dict[str, str]

    def client(self, role: str | None = "admin", **kw: object) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.tokens[role]}"} if role else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=120.0, **kw)  # type: ignore[arg-type]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(settings: Settings) -> tuple[object, threading.Thread, str]:
    """Start uvicorn for ``create_app(settings)`` in a thread; returns (server, thread, url)."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn_config(create_app(settings), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    return server, thread, f"http://127.0.0.1:{port}"


def make_settings(root: Path, **overrides: object) -> Settings:
    base = {
        "store": f"sqlite:///{root / 'store.db'}",
        "model_path": root / "models",
        "keys_db": root / "keys.db",
        "audit_log": root / "audit.jsonl",
        "jobs_db": root / "jobs.db",
        "upload_dir": root / "uploads",
        "rate_limit_per_minute": 60_000.0,
        "rate_limit_burst": 10_000,
        "max_request_bytes": 4 * 1024 * 1024,
        "deid_salt": "test-salt",
    }
    base.update(overrides)
    return Settings(**base)  # type: ignore[arg-type]


ROLES = {
    "admin": ["admin"],
    "reader": ["graph:read"],
    "writer": ["records:write"],
    "sim": ["sim:run"],
}


@pytest.fixture(scope="session")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    root = tmp_path_factory.mktemp("api")
    settings = make_settings(root)
    keys = KeyStore(settings.keys_db)
    created = {role: keys.create(f"test-{role}", scopes) for role, scopes in ROLES.items()}
    revoked = keys.create("test-revoked", ["admin"])
    keys.revoke(revoked.key.id)
    keys.close()
    server, thread, url = start_server(settings)
    tokens = {r: k.token for r, k in created.items()} | {"revoked": revoked.token}
    key_ids = {r: k.key.id for r, k in created.items()} | {"revoked": revoked.key.id}
    yield LiveServer(url=url, settings=settings, tokens=tokens, key_ids=key_ids)
    server.should_exit = True  # type: ignore[attr-defined]
    thread.join(timeout=10)


@pytest.fixture(scope="session")
def bundle_path() -> Path:
    """The smallest external Synthea bundle (one patient)."""
    files = sorted(SYNTHEA.glob("*.json"), key=lambda p: p.stat().st_size)
    if not files:
        missing_requirement(f"external Synthea data not found under {SYNTHEA}")
    return files[0]


@dataclass
class Cohort:
    """A synthetic cohort (known ground truth) ingested into the live server."""

    root: Path
    patient_ids: list[str]


@pytest.fixture(scope="session")
def cohort(live: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> Cohort:
    from synthetic.cohort import SynthConfig, generate_cohort

    root = tmp_path_factory.mktemp("cohort")
    generate_cohort(SynthConfig(patients=12, years=2.0, seed=7), root)
    ids = []
    with live.client("writer") as c:
        for f in sorted((root / "fhir").glob("*.json")):
            r = c.post("/v1/records", content=f.read_bytes(), headers={"Content-Type": "application/fhir+json"})
            assert r.status_code == 201, r.text
            ids.extend(r.json()["patients"])
    return Cohort(root, sorted(ids))


@pytest.fixture(scope="session")
def trained_model(live: LiveServer, cohort: Cohort) -> dict:
    """A small model trained through ``POST /v1/models`` (the job's final state, its name and the
    ``(progress, message)`` pairs seen while polling)."""
    body = {"name": "tiny", "epochs": 2, "members": 2, "origins_per_patient": 2, "batch_size": 16,
            "spec": {"horizon_days": 180}}
    with live.client("admin") as c:
        r = c.post("/v1/models", json=body)
        assert r.status_code == 202, r.text
        job = r.json()
        assert job["status"] in ("queued", "running") and job["kind"] == "train"
        deadline = time.monotonic() + 300
        seen = []
        while job["status"] in ("queued", "running") and time.monotonic() < deadline:
            time.sleep(0.1)
            job = c.get(f"/v1/jobs/{job['id']}").json()
            seen.append((job["progress"], job["message"]))
    return {**job, "name": "tiny", "seen": seen}


@pytest.fixture(scope="module")
def pid(cohort: Cohort, trained_model: dict) -> str:
    """A patient of the cohort the trained model knows (a module reading another patient overrides it)."""
    assert trained_model["status"] == "succeeded", trained_model
    return cohort.patient_ids[0]
