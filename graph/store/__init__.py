"""Graph stores: the :class:`GraphStore` base class and the store chosen by URL.

* ``sqlite:///path/to/file.db`` (or a bare path): the embedded default, :class:`SQLiteStore`.
* ``bolt://host:port`` / ``neo4j://host:port``: :class:`graph.store.neo4j.Neo4jStore`, with
  credentials from ``NEO4J_USER``/``NEO4J_PASSWORD`` (or ``bolt://user:pass@host``).
* ``memory://``: a fresh, empty :class:`MemoryStore` (nothing persisted; for tests).
"""

from __future__ import annotations

import os
from pathlib import Path

from core.errors import StoreError
from graph.store.base import GraphStore, NodeQuery, StoreCounts, WriteStats
from graph.store.memory import MemoryStore
from graph.store.sqlite import SQLiteStore

__all__ = [
    "DEFAULT_STORE_URL",
    "GraphStore",
    "MemoryStore",
    "NodeQuery",
    "SQLiteStore",
    "StoreCounts",
    "WriteStats",
    "open_store",
    "resolve_store_url",
]

#: Used when neither ``--store`` nor ``TWIN_STORE`` is given.
DEFAULT_STORE_URL = "sqlite:///twin-data/twin.db"


def resolve_store_url(url: str | None = None) -> str:
    """The explicit URL, else ``$TWIN_STORE``, else :data:`DEFAULT_STORE_URL`."""
    return url or os.environ.get("TWIN_STORE") or DEFAULT_STORE_URL


def open_store(url: str | None = None) -> GraphStore:
    """Open the store named by ``url`` (see module docstring)."""
    url = resolve_store_url(url)
    if url == "memory://":
        return MemoryStore()
    if url.startswith("sqlite:///"):
        return SQLiteStore(Path(url.removeprefix("sqlite:///")))
    if url.startswith("sqlite://"):
        raise StoreError(f"embedded store URL must be sqlite:///PATH (three slashes), got {url!r}")
    if url.startswith(("bolt://", "neo4j://", "bolt+s://", "neo4j+s://")):
        from graph.store.neo4j import Neo4jStore

        return Neo4jStore.from_url(url)
    if "://" in url:
        raise StoreError(f"unknown store URL scheme in {url!r}; use sqlite:///PATH, bolt://, neo4j:// or memory://")
    return SQLiteStore(Path(url))
