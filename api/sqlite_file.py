"""The service's small SQLite files (API keys, job states): opened one way, in WAL mode."""

from __future__ import annotations

import sqlite3
from pathlib import Path

__all__ = ["open_sqlite_file"]


def open_sqlite_file(path: Path, schema: str) -> sqlite3.Connection:
    """An autocommit, WAL-mode connection to ``path`` (folders created) with ``schema`` applied.

    Shared between threads: callers serialise use with their own lock.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=30.0)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.executescript(schema)
    return conn
