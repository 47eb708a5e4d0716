"""Fixtures for the ingest tests: the shared external data and a fresh embedded store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from graph.store.sqlite import SQLiteStore
from tests.conftest import missing_requirement

EXTERNAL = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "external"


@pytest.fixture(scope="session")
def external_dir() -> Path:
    """``../shared/data/external`` (the third-party test records); skips when it is absent."""
    if not (EXTERNAL / "synthea-fhir").is_dir():
        missing_requirement(f"external test data not found at {EXTERNAL.resolve()}")
    return EXTERNAL.resolve()


@pytest.fixture()
def sqlite_store(tmp_path: Path) -> Iterator[SQLiteStore]:
    """A fresh, empty embedded store in a temporary file."""
    s = SQLiteStore(tmp_path / "ingest.db")
    try:
        yield s
    finally:
        s.close()
