"""API keys with scopes, stored hashed, and per-key request limits.

A token is ``twk_<key id>_<secret>``. Only ``sha256(salt || secret)`` and a per-key random
salt are stored, so the key file never holds a usable credential; the token is shown once,
when the key is created. The secret has 256 bits of entropy, so a fast salted hash is as
strong as a slow KDF here and keeps per-request verification cheap. Comparison is
constant-time (:func:`hmac.compare_digest`).

Scopes: ``graph:read`` (patients, query), ``records:write`` (ingest), ``sim:run`` (forecast,
scenarios, list models), ``admin`` (everything, including training and jobs).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from api.sqlite_file import open_sqlite_file
from core import TwinError

__all__ = ["SCOPES", "ApiKey", "KeyStore", "KeyStoreError", "NewKey", "RateLimiter"]

SCOPES: tuple[str, ...] = ("graph:read", "records:write", "sim:run", "admin")
_PREFIX = "twk"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    salt BLOB NOT NULL,
    hash BLOB NOT NULL,
    scopes TEXT NOT NULL,
    created TEXT NOT NULL,
    revoked TEXT
);
"""


class KeyStoreError(TwinError, ValueError):
    """A key could not be created, found or revoked as asked."""


@dataclass(frozen=True)
class ApiKey:
    """A stored key's public facts (never its secret)."""

    id: str
    name: str
    scopes: frozenset[str]
    created: datetime
    revoked: datetime | None = None

    def allows(self, scope: str) -> bool:
        """Whether this key may use ``scope`` (``admin`` allows everything)."""
        return scope in self.scopes or "admin" in self.scopes


@dataclass(frozen=True)
class NewKey:
    """A freshly created key and its token (the only time the token exists in clear)."""

    key: ApiKey
    token: str


def _digest(salt: bytes, secret: str) -> bytes:
    return hashlib.sha256(salt + secret.encode()).digest()


class KeyStore:
    """API keys in a small SQLite file (thread-safe)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._conn = open_sqlite_file(self.path, _SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def create(self, name: str, scopes: Iterable[str]) -> NewKey:
        """Create a key with ``scopes``; the returned token is not stored anywhere."""
        scope_set = frozenset(scopes)
        if not name.strip():
            raise KeyStoreError("a key needs a non-empty name")
        if not scope_set:
            raise KeyStoreError(f"a key needs at least one scope; choose from {', '.join(SCOPES)}")
        unknown = sorted(scope_set - set(SCOPES))
        if unknown:
            raise KeyStoreError(f"unknown scope(s) {unknown}; choose from {', '.join(SCOPES)}")
        key_id = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        salt = secrets.token_bytes(16)
        created = datetime.now(UTC).replace(microsecond=0)
        with self._lock:
            self._conn.execute(
                "INSERT INTO api_keys (id, name, salt, hash, scopes, created) VALUES (?, ?, ?, ?, ?, ?)",
                (key_id, name, salt, _digest(salt, secret), " ".join(sorted(scope_set)), created.isoformat()),
            )
        return NewKey(ApiKey(key_id, name, scope_set, created), f"{_PREFIX}_{key_id}_{secret}")

    def list(self) -> list[ApiKey]:
        """All keys, revoked ones included, oldest first."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT id, name, scopes, created, revoked FROM api_keys ORDER BY created, id"
            ).fetchall()
        return [_key(r) for r in rows]

    def revoke(self, key_id: str) -> ApiKey:
        """Revoke a key for good; revoking twice is harmless."""
        now = datetime.now(UTC).replace(microsecond=0).isoformat()
        with self._lock:
            cur = self._conn.execute("UPDATE api_keys SET revoked = coalesce(revoked, ?) WHERE id = ?", (now, key_id))
            if cur.rowcount == 0:
                raise KeyStoreError(f"no API key with id {key_id!r}")
            row = self._conn.execute(
                "SELECT id, name, scopes, created, revoked FROM api_keys WHERE id = ?", (key_id,)
            ).fetchone()
        return _key(row)

    def verify(self, token: str) -> ApiKey | None:
        """The live key ``token`` belongs to, or ``None`` (malformed, unknown, wrong or revoked)."""
        parts = token.split("_", 2)
        if len(parts) != 3 or parts[0] != _PREFIX or not parts[1] or not parts[2]:
            return None
        key_id, secret = parts[1], parts[2]
        with self._lock:
            row = self._conn.execute(
                "SELECT id, name, scopes, created, revoked, salt, hash FROM api_keys WHERE id = ?", (key_id,)
            ).fetchone()
        if row is None:
            # Burn the same work as a real check so timing does not reveal which ids exist.
            hmac.compare_digest(_digest(b"\0" * 16, secret), b"\0" * 32)
            return None
        ok = hmac.compare_digest(_digest(row[5], secret), row[6])
        if not ok or row[4] is not None:
            return None
        return _key(row[:5])


def _key(row: tuple) -> ApiKey:
    return ApiKey(
        id=row[0],
        name=row[1],
        scopes=frozenset(row[2].split()),
        created=datetime.fromisoformat(row[3]),
        revoked=datetime.fromisoformat(row[4]) if row[4] else None,
    )


class RateLimiter:
    """A token bucket per key: ``burst`` requests at once, refilled at ``per_minute``/60 per second."""

    def __init__(self, per_minute: float, burst: int) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def acquire(self, key_id: str) -> float:
        """Take one token; returns 0 when allowed, else the seconds until a token is available."""
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key_id, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                self._buckets[key_id] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key_id] = (tokens, now)
            return (1.0 - tokens) / self.rate
