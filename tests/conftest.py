"""Shared pytest fixtures.

Neo4j: :func:`neo4j_server_uri` starts ONE real Neo4j server per test session through the
project's ``scripts/neo4j-server run`` (Maven fetches the jars on a fresh machine), or reuses
the server named by ``NEO4J_TEST_URI``. When the server cannot start, Neo4j tests are skipped
on a developer machine but FAIL when ``CI`` is set, so CI never passes without Neo4j.
:func:`store` gives every test a fresh empty store, parametrised over both implementations.
"""

from __future__ import annotations

import os
import queue
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from graph.store.base import GraphStore
from graph.store.memory import MemoryStore
from graph.store.sqlite import SQLiteStore

REPO = Path(__file__).resolve().parents[1]
NEO4J_SCRIPT = REPO / "scripts" / "neo4j-server"
#: Generous: the first start on a fresh machine downloads the Neo4j jars through Maven.
NEO4J_START_TIMEOUT_S = float(os.environ.get("NEO4J_START_TIMEOUT", "900"))
STORE_KINDS = ["memory", "sqlite", pytest.param("neo4j", marks=pytest.mark.neo4j)]


# ---------------------------------------------------------------------- Neo4j server fixtures
def missing_requirement(reason: str) -> None:
    """Skip locally, fail under CI: a CI run must never pass without the tests that need a
    real component (the Neo4j server) or the shared test data (``../shared/data``)."""
    if os.environ.get("CI"):
        pytest.fail(f"required by these tests but unavailable: {reason}", pytrace=False)
    pytest.skip(reason)



def _start_neo4j_server(log_path: Path) -> tuple[subprocess.Popen[str], str]:
    """Run ``scripts/neo4j-server run`` and wait for its ``NEO4J_BOLT_URI=`` line."""
    if shutil.which("java") is None:
        raise RuntimeError("Java 17+ is not installed ('java' is not on PATH); scripts/neo4j-server needs it")
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [str(NEO4J_SCRIPT), "run"],
            stdin=subprocess.PIPE,  # the server stops when this pipe closes, even if pytest dies
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            cwd=REPO,
        )
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, name="neo4j-server-stdout", daemon=True).start()
    deadline = time.monotonic() + NEO4J_START_TIMEOUT_S
    while True:
        try:
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            _stop_neo4j_server(proc)
            raise RuntimeError(f"no Bolt URI within {NEO4J_START_TIMEOUT_S:.0f}s (log: {log_path})") from None
        if line is None:
            proc.wait(timeout=30)
            tail = log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"scripts/neo4j-server exited with status {proc.returncode}: {tail}")
        if line.startswith("NEO4J_BOLT_URI="):
            return proc, line.strip().split("=", 1)[1]


def _stop_neo4j_server(proc: subprocess.Popen[str]) -> None:
    if proc.stdin is not None and not proc.stdin.closed:
        proc.stdin.close()
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="session")
def neo4j_server_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bolt URI of a real Neo4j server for this test session (started once, stopped at the end)."""
    existing = os.environ.get("NEO4J_TEST_URI")
    if existing:
        yield existing
        return
    log_path = tmp_path_factory.mktemp("neo4j") / "neo4j-server.log"
    try:
        proc, uri = _start_neo4j_server(log_path)
    except (OSError, RuntimeError) as exc:
        missing_requirement(f"Neo4j server unavailable: {exc}")
        return
    try:
        yield uri
    finally:
        _stop_neo4j_server(proc)


@pytest.fixture()
def neo4j_store(neo4j_server_uri: str) -> Iterator[GraphStore]:
    """A Neo4jStore on the session server, wiped before the test (one database per server)."""
    from core.errors import StoreError
    from graph.store.neo4j import Neo4jStore

    store = Neo4jStore.from_url(neo4j_server_uri)
    try:
        store.wipe()
    except StoreError as exc:
        store.close()
        missing_requirement(f"Neo4j server unavailable: {exc}")
    try:
        yield store
    finally:
        store.close()


# ---------------------------------------------------------------------- store fixtures (every kind)
@pytest.fixture(params=STORE_KINDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[GraphStore]:
    """A fresh, empty store of each kind: in memory, an embedded SQLite file, and the real Neo4j server."""
    if request.param == "memory":
        m = MemoryStore()
        try:
            yield m
        finally:
            m.close()
    elif request.param == "sqlite":
        s = SQLiteStore(tmp_path / "store.db")
        try:
            yield s
        finally:
            s.close()
    else:
        yield request.getfixturevalue("neo4j_store")


@pytest.fixture()
def sqlite_store_factory(tmp_path: Path) -> Iterator[Callable[[], SQLiteStore]]:
    """Opens extra empty embedded stores (for copy and round-trip tests)."""
    opened: list[SQLiteStore] = []

    def make() -> SQLiteStore:
        s = SQLiteStore(tmp_path / f"extra-{len(opened)}.db")
        opened.append(s)
        return s

    yield make
    for s in opened:
        s.close()
