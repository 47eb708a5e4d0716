"""Background jobs (model training) on worker threads, with state persisted in SQLite.

A job's row is written when it is queued and updated as it runs, so ``GET /v1/jobs/{id}``
answers from the file, not from memory. When the service starts, any job still marked
``queued`` or ``running`` belonged to a process that is gone: it is marked ``failed`` with a
message saying so, never left looking alive.
"""

from __future__ import annotations

import json
import logging
import queue
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from api.sqlite_file import open_sqlite_file
from core import TwinError

__all__ = ["INTERRUPTED", "JobRecord", "JobRunner", "ProgressFn"]

#: ``error`` of a job that a restart interrupted.
INTERRUPTED = "interrupted: the service stopped before this job finished; its outcome is unknown, submit it again"

#: Called by a job with a fraction done in [0, 1] and a short message (no patient data).
ProgressFn = Callable[[float, str], None]
JobFn = Callable[[ProgressFn], dict[str, Any]]

_log = logging.getLogger("api.jobs")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    progress REAL NOT NULL,
    message TEXT,
    created TEXT NOT NULL,
    updated TEXT NOT NULL,
    params TEXT NOT NULL,
    result TEXT,
    error TEXT,
    owner TEXT
);
CREATE INDEX IF NOT EXISTS jobs_created ON jobs(created);
"""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class JobRecord:
    """A job's persisted state."""

    id: str
    kind: str
    status: str
    progress: float
    message: str | None
    created: datetime
    updated: datetime
    params: dict[str, Any]
    result: dict[str, Any] | None
    error: str | None
    owner: str | None


class JobRunner:
    """Runs submitted jobs on ``workers`` daemon threads; state lives in ``db_path``."""

    def __init__(self, db_path: str | Path, workers: int = 1) -> None:
        self.path = Path(db_path)
        self._conn = open_sqlite_file(self.path, _SCHEMA)
        self._lock = threading.Lock()
        with self._lock:
            self._conn.execute(
                "UPDATE jobs SET status='failed', error=?, updated=? WHERE status IN ('queued', 'running')",
                (INTERRUPTED, _now()),
            )
        self._queue: queue.Queue[tuple[str, JobFn] | None] = queue.Queue()
        self._threads = [
            threading.Thread(target=self._work, name=f"twin-job-{i}", daemon=True) for i in range(workers)
        ]
        for t in self._threads:
            t.start()

    # ------------------------------------------------------------------ public
    def submit(self, kind: str, params: dict[str, Any], fn: JobFn, *, owner: str | None = None) -> JobRecord:
        """Queue ``fn``; it receives a :data:`ProgressFn` and returns a JSON-ready result dict."""
        job_id = uuid.uuid4().hex
        now = _now()
        with self._lock:
            self._conn.execute(
                "INSERT INTO jobs (id, kind, status, progress, message, created, updated, params, owner) "
                "VALUES (?, ?, 'queued', 0, 'queued', ?, ?, ?, ?)",
                (job_id, kind, now, now, json.dumps(params, sort_keys=True, default=str), owner),
            )
        self._queue.put((job_id, fn))
        record = self.get(job_id)
        assert record is not None  # just inserted
        return record

    def get(self, job_id: str) -> JobRecord | None:
        """The job's current state, or ``None`` if no such job was ever submitted."""
        with self._lock:
            row = self._conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return _record(row) if row else None

    def list(self, kind: str | None = None) -> list[JobRecord]:
        """All jobs (of ``kind``), newest first."""
        sql, params = "SELECT * FROM jobs", tuple[str, ...]()
        if kind is not None:
            sql, params = sql + " WHERE kind = ?", (kind,)
        with self._lock:
            rows = self._conn.execute(sql + " ORDER BY created DESC, id", params).fetchall()
        return [_record(r) for r in rows]

    def wait(self, job_id: str, timeout_s: float) -> JobRecord | None:
        """Poll until the job has finished or ``timeout_s`` passed; returns its last state."""
        deadline = time.monotonic() + timeout_s
        rec = self.get(job_id)
        while rec is not None and rec.status in ("queued", "running") and time.monotonic() < deadline:
            time.sleep(0.05)
            rec = self.get(job_id)
        return rec

    def close(self) -> None:
        """Stop taking jobs. A job still running is abandoned (its row reads ``failed`` on the next start)."""
        for _ in self._threads:
            self._queue.put(None)
        with self._lock:
            self._conn.close()

    # ------------------------------------------------------------------ workers
    def _update(self, job_id: str, **cols: Any) -> None:
        cols["updated"] = _now()
        sets = ", ".join(f"{k} = ?" for k in cols)
        with self._lock:
            try:
                self._conn.execute(f"UPDATE jobs SET {sets} WHERE id = ?", (*cols.values(), job_id))
            except sqlite3.ProgrammingError:  # closed during shutdown
                pass

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            job_id, fn = item
            self._update(job_id, status="running", message="started")

            def progress(frac: float, message: str, _id: str = job_id) -> None:
                self._update(_id, progress=min(1.0, max(0.0, float(frac))), message=message[:200])

            try:
                result = fn(progress)
            except TwinError as exc:
                self._update(job_id, status="failed", error=str(exc), message="failed")
            except Exception as exc:  # a bug in the job: record honestly, keep the worker alive
                _log.error("job %s crashed with %s", job_id, type(exc).__name__)
                self._update(job_id, status="failed", error=f"internal error ({type(exc).__name__})", message="failed")
            else:
                self._update(
                    job_id,
                    status="succeeded",
                    progress=1.0,
                    message="done",
                    result=json.dumps(result, sort_keys=True, default=str),
                )


def _record(row: tuple) -> JobRecord:
    (id_, kind, status, progress, message, created, updated, params, result, error, owner) = row
    return JobRecord(
        id=id_,
        kind=kind,
        status=status,
        progress=progress,
        message=message,
        created=datetime.fromisoformat(created),
        updated=datetime.fromisoformat(updated),
        params=json.loads(params),
        result=json.loads(result) if result else None,
        error=error,
        owner=owner,
    )
