"""Background jobs (training, large forecasts and scenario runs) on worker threads, with state
persisted in SQLite.

A job's row is written when it is queued and updated as it runs, so ``GET /v1/jobs/{id}``
answers from the file, not from memory, in whichever server process (``twin serve --workers
N``) the request lands. A job runs in the process that accepted it; its row names that process
(``runner``: pid and start time). When a runner starts, any job still marked ``queued`` or
``running`` whose process is gone is marked ``failed`` with a message saying so, never left
looking alive; jobs of live sibling processes are left alone. A cancel request reaching
another process than the job's is written to the row, and the job's own process reads it at
the job's next checkpoint (a queued job is cancelled at once).

The queue is capped (``max_queued`` jobs waiting): :meth:`JobRunner.submit` raises
:class:`QueueFull` with a retry time estimated from the jobs actually running and the
durations of recent ones. :meth:`JobRunner.cancel` removes a queued job at once and asks a
running one to stop at its next checkpoint (its progress callback raises
:class:`service.Cancelled`; a training job's child process is killed).
"""

from __future__ import annotations

import json
import logging
import math
import os
import queue
import sqlite3
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from api.errors import ProblemError
from api.schemas import JobOut
from api.sqlite_file import open_sqlite_file
from core import TwinError
from service import Cancelled, CancelToken

__all__ = ["ACTIVE", "INTERRUPTED", "JobFn", "JobRecord", "JobRunner", "ProgressFn", "QueueFull", "job_out",
           "submit_job"]

#: ``error`` of a job that a restart interrupted.
INTERRUPTED = "interrupted: the service stopped before this job finished; its outcome is unknown, submit it again"
#: States of a job that has not finished.
ACTIVE = ("queued", "running")

#: Called by a job with a fraction done in [0, 1] and a short message (no patient data); it
#: raises :class:`service.Cancelled` once the job has been cancelled.
ProgressFn = Callable[[float, str], None]
#: A job: receives its progress callback and its cancel token, returns a JSON-ready result.
JobFn = Callable[[ProgressFn, CancelToken], dict[str, Any]]

#: Retry estimate when no job has finished yet to measure durations by (seconds).
_NO_HISTORY_S = 10.0
_RECENT = 20


class QueueFull(Exception):
    """The job queue holds ``cap`` waiting jobs; a slot is expected in about ``retry_after_s`` seconds."""

    def __init__(self, cap: int, retry_after_s: int) -> None:
        super().__init__(f"the job queue is full ({cap} jobs waiting); retry in about {retry_after_s} s")
        self.cap = cap
        self.retry_after_s = retry_after_s

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
    owner TEXT,
    runner TEXT,
    cancel TEXT
);
CREATE INDEX IF NOT EXISTS jobs_created ON jobs(created);
"""


_COLUMNS = "id, kind, status, progress, message, created, updated, params, result, error, owner"


def _process_start(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot, Linux), ``None`` if it does not exist
    or cannot be read: with the pid it names a process uniquely even when pids are reused."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()[19]


def _runner_id(pid: int) -> str:
    return f"{pid}:{_process_start(pid) or '?'}"


def _runner_alive(runner: str | None) -> bool:
    """Whether the process a job row names still runs (pid and start time both match)."""
    if not runner or ":" not in runner:
        return False
    pid, start = runner.split(":", 1)
    try:
        os.kill(int(pid), 0)
    except (OSError, ValueError):
        return False
    return start == "?" or _process_start(int(pid)) == start


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
    """Runs submitted jobs on ``workers`` daemon threads, at most ``max_queued`` waiting; state
    lives in ``db_path``."""

    def __init__(self, db_path: str | Path, workers: int = 1, max_queued: int = 16) -> None:
        if workers < 1 or max_queued < 1:
            raise ValueError("a job runner needs at least one worker and one queue slot")
        self.path = Path(db_path)
        self.workers = workers
        self.max_queued = max_queued
        self._conn = open_sqlite_file(self.path, _SCHEMA)
        have = {row[1] for row in self._conn.execute("PRAGMA table_info(jobs)")}
        for col in ("runner", "cancel"):  # files written before the service ran several processes
            if col not in have:
                self._conn.execute(f"ALTER TABLE jobs ADD COLUMN {col} TEXT")
        self.runner = _runner_id(os.getpid())
        self._lock = threading.Lock()  # the connection
        self._state = threading.Lock()  # the in-memory queue state below
        self._queued: dict[str, CancelToken] = {}  # insertion-ordered
        self._running: dict[str, tuple[float, CancelToken]] = {}  # id -> (monotonic start, token)
        self._durations: deque[float] = deque(maxlen=_RECENT)
        with self._lock:
            active = self._conn.execute("SELECT id, runner FROM jobs WHERE status IN ('queued', 'running')").fetchall()
            for job_id, runner in active:
                if not _runner_alive(runner):
                    self._conn.execute("UPDATE jobs SET status='failed', error=?, updated=? WHERE id = ? "
                                       "AND status IN ('queued', 'running')", (INTERRUPTED, _now(), job_id))
        self._queue: queue.Queue[tuple[str, JobFn] | None] = queue.Queue()
        self._threads = [
            threading.Thread(target=self._work, name=f"twin-job-{i}", daemon=True) for i in range(workers)
        ]
        for t in self._threads:
            t.start()

    # ------------------------------------------------------------------ public
    def submit(self, kind: str, params: dict[str, Any], fn: JobFn, *, owner: str | None = None) -> JobRecord:
        """Queue ``fn`` (see :data:`JobFn`); :class:`QueueFull` when ``max_queued`` jobs are waiting."""
        job_id = uuid.uuid4().hex
        now = _now()
        with self._state:
            if len(self._queued) >= self.max_queued:
                raise QueueFull(self.max_queued, self._retry_after_locked())
            self._queued[job_id] = CancelToken()
        try:
            with self._lock:
                self._conn.execute(
                    "INSERT INTO jobs (id, kind, status, progress, message, created, updated, params, owner, runner) "
                    "VALUES (?, ?, 'queued', 0, 'queued', ?, ?, ?, ?, ?)",
                    (job_id, kind, now, now, json.dumps(params, sort_keys=True, default=str), owner, self.runner),
                )
        except BaseException:
            with self._state:
                self._queued.pop(job_id, None)
            raise
        self._queue.put((job_id, fn))
        record = self.get(job_id)
        assert record is not None  # just inserted
        return record

    def cancel(self, job_id: str, reason: str = "cancelled on request") -> JobRecord | None:
        """Cancel a job: a queued one at once, a running one at its next checkpoint (it reads
        ``running`` with message ``cancelling`` until then). Finished jobs are left as they are."""
        with self._state:
            waiting = self._queued.pop(job_id, None)
            running = self._running.get(job_id)
        if waiting is not None:
            waiting.cancel(reason)
            self._update(job_id, status="cancelled", error=reason, message="cancelled before it started")
        elif running is not None:
            running[1].cancel(reason)
            self._update(job_id, message="cancelling")
        else:  # another process's job (or a finished one: then nothing changes)
            now = _now()
            with self._lock:
                self._conn.execute("UPDATE jobs SET status='cancelled', error=?, message='cancelled before it started', "
                                   "updated=? WHERE id = ? AND status = 'queued'", (reason, now, job_id))
                self._conn.execute("UPDATE jobs SET cancel=?, message='cancelling', updated=? WHERE id = ? "
                                   "AND status = 'running'", (reason, now, job_id))
        return self.get(job_id)

    def retry_after_s(self) -> int:
        """Seconds until a queue slot is expected to free (>= 1): see :meth:`_retry_after_locked`."""
        with self._state:
            return self._retry_after_locked()

    def queued_count(self) -> int:
        with self._state:
            return len(self._queued)

    def get(self, job_id: str) -> JobRecord | None:
        """The job's current state, or ``None`` if no such job was ever submitted."""
        with self._lock:
            row = self._conn.execute(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return _record(row) if row else None

    def list(self, kind: str | None = None, owner: str | None = None) -> list[JobRecord]:
        """All jobs (of ``kind``, of ``owner``), newest first."""
        where: list[str] = []
        params: list[str] = []
        if kind is not None:
            where, params = [*where, "kind = ?"], [*params, kind]
        if owner is not None:
            where, params = [*where, "owner = ?"], [*params, owner]
        sql = f"SELECT {_COLUMNS} FROM jobs" + (" WHERE " + " AND ".join(where) if where else "")
        with self._lock:
            rows = self._conn.execute(sql + " ORDER BY created DESC, id", tuple(params)).fetchall()
        return [_record(r) for r in rows]

    def wait(self, job_id: str, timeout_s: float) -> JobRecord | None:
        """Poll until the job has finished or ``timeout_s`` passed; returns its last state."""
        deadline = time.monotonic() + timeout_s
        rec = self.get(job_id)
        while rec is not None and rec.status in ACTIVE and time.monotonic() < deadline:
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

    def _retry_after_locked(self) -> int:
        """When a queued job should start (freeing a slot): the soonest expected end of a running
        job, from the mean duration of the last finished jobs (without history: as long again as
        the longest-running job has run, at least 10 s). Never below 1 s."""
        now = time.monotonic()
        elapsed = [now - start for start, _ in self._running.values()]
        if not elapsed:  # a worker is between jobs and takes the next one now
            return 1
        if self._durations:
            mean = sum(self._durations) / len(self._durations)
            left = min((mean - e for e in elapsed), default=mean)
            est = max(left, 0.25 * mean)  # overrunning jobs: expect them to end soon, not now
        else:
            est = max([_NO_HISTORY_S, *elapsed])
        return max(1, math.ceil(est))

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            job_id, fn = item
            with self._state:
                token = self._queued.pop(job_id, None)
                if token is None:  # cancelled while it waited
                    continue
                started = time.monotonic()
                self._running[job_id] = (started, token)
            try:
                with self._lock:  # running, unless another process cancelled it while it waited
                    took = self._conn.execute("UPDATE jobs SET status='running', message='started', updated=? "
                                              "WHERE id = ? AND status = 'queued'", (_now(), job_id)).rowcount
            except sqlite3.ProgrammingError:  # closed during shutdown: the job stays queued (failed on restart)
                return
            if not took:
                with self._state:
                    self._running.pop(job_id, None)
                continue

            def progress(frac: float, message: str, _id: str = job_id, _token: CancelToken = token) -> None:
                try:
                    with self._lock:  # a cancel request another server process wrote to the row
                        row = self._conn.execute("SELECT cancel FROM jobs WHERE id = ?", (_id,)).fetchone()
                except sqlite3.ProgrammingError:  # closed during shutdown
                    row = None
                if row and row[0]:
                    _token.cancel(row[0])
                _token.check()
                self._update(_id, progress=min(1.0, max(0.0, float(frac))), message=message[:200])

            try:
                result = fn(progress, token)
            except Cancelled:
                self._update(job_id, status="cancelled", error=token.reason, message="cancelled")
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
            finally:
                with self._state:
                    self._running.pop(job_id, None)
                    self._durations.append(time.monotonic() - started)


def job_out(j: JobRecord) -> JobOut:
    """The response model of a job (its parameters and owner stay on the server)."""
    return JobOut(
        id=j.id, kind=j.kind, status=j.status, progress=j.progress, message=j.message,
        created=j.created, updated=j.updated, result=j.result, error=j.error,
    )


def submit_job(jobs: JobRunner, kind: str, params: dict[str, Any], fn: JobFn, *, owner: str | None) -> JobOut:
    """Queue a job for a request: its state, or a 429 problem with ``Retry-After`` when the queue is full."""
    try:
        return job_out(jobs.submit(kind, params, fn, owner=owner))
    except QueueFull as exc:
        raise ProblemError(429, str(exc), kind="queue-full", headers={"Retry-After": str(exc.retry_after_s)}) from None


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
