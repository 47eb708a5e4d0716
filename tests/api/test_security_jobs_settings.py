"""Unit tests of the key store, rate limiter, job runner (incl. restart) and settings loading."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from pydantic import ValidationError

from api.jobs import INTERRUPTED, JobRunner, QueueFull
from api.security import KeyStore, KeyStoreError, RateLimiter
from api.settings import Settings, load_settings
from core.errors import TwinError


def test_keys_are_stored_hashed_and_verified(tmp_path: Path) -> None:
    ks = KeyStore(tmp_path / "k.db")
    new = ks.create("lab app", ["graph:read", "sim:run"])
    assert new.token.startswith(f"twk_{new.key.id}_")
    assert ks.verify(new.token) == new.key
    assert ks.verify(new.token + "x") is None and ks.verify("twk_" + new.key.id + "_") is None
    assert ks.verify("garbage") is None and ks.verify(f"twk_ffff_{new.token.split('_', 2)[2]}") is None
    raw = (tmp_path / "k.db").read_bytes() + b"".join(p.read_bytes() for p in tmp_path.glob("k.db-*"))
    assert new.token.split("_", 2)[2].encode() not in raw  # the secret is never written
    assert [k.id for k in ks.list()] == [new.key.id]
    ks.revoke(new.key.id)
    assert ks.verify(new.token) is None and ks.list()[0].revoked is not None
    with pytest.raises(KeyStoreError, match="unknown scope"):
        ks.create("x", ["graph:write"])
    with pytest.raises(KeyStoreError, match="no API key"):
        ks.revoke("nope")
    ks.close()


def test_rate_limiter_bucket() -> None:
    rl = RateLimiter(per_minute=60.0, burst=2)
    assert rl.acquire("a") == 0 and rl.acquire("a") == 0
    wait = rl.acquire("a")
    assert 0 < wait <= 1.0
    assert rl.acquire("b") == 0


def test_jobs_run_persist_and_fail_honestly(tmp_path: Path) -> None:
    runner = JobRunner(tmp_path / "j.db")
    ok = runner.submit("echo", {"x": 1}, lambda progress, token: (progress(0.5, "half"), {"x": 2})[1])
    bad = runner.submit("boom", {}, lambda progress, token: (_ for _ in ()).throw(TwinError("no patients")))
    assert runner.wait(ok.id, 10).status == "succeeded" and runner.get(ok.id).result == {"x": 2}
    failed = runner.wait(bad.id, 10)
    assert failed.status == "failed" and failed.error == "no patients"
    crash = runner.submit("crash", {}, lambda progress, token: 1 / 0)
    rec = runner.wait(crash.id, 10)
    assert rec.status == "failed" and rec.error == "internal error (ZeroDivisionError)"
    runner.close()


def _until(cond, timeout_s: float = 10.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_queue_cap_refuses_with_a_real_retry_time(tmp_path: Path) -> None:
    release = threading.Event()
    runner = JobRunner(tmp_path / "j.db", workers=1, max_queued=2)
    # history: one job of ~0.3 s, so the estimate comes from a measured duration
    quick = runner.submit("t", {}, lambda progress, token: (time.sleep(0.3), {})[1])
    assert runner.wait(quick.id, 10).status == "succeeded"
    running = runner.submit("t", {}, lambda progress, token: (release.wait(20), {})[1])
    _until(lambda: runner.get(running.id).status == "running")
    waiting = [runner.submit("t", {}, lambda progress, token: {}) for _ in range(2)]
    with pytest.raises(QueueFull) as full:
        runner.submit("t", {}, lambda progress, token: {})
    assert full.value.retry_after_s >= 1 and full.value.cap == 2
    # cancelling a waiting job frees its slot at once
    assert runner.cancel(waiting[0].id).status == "cancelled"
    extra = runner.submit("t", {}, lambda progress, token: {})
    release.set()
    for job in (running, waiting[1], extra):
        assert runner.wait(job.id, 10).status == "succeeded"
    assert runner.get(waiting[0].id).status == "cancelled"
    runner.close()


def test_retry_after_grows_with_the_running_job(tmp_path: Path) -> None:
    release = threading.Event()
    runner = JobRunner(tmp_path / "j.db", workers=1, max_queued=1)
    running = runner.submit("t", {}, lambda progress, token: (release.wait(20), {})[1])
    _until(lambda: runner.get(running.id).status == "running")
    runner.submit("t", {}, lambda progress, token: {})
    # no finished job yet: at least 10 s, never 0
    assert runner.retry_after_s() >= 10
    release.set()
    runner.close()


def test_running_job_stops_at_its_next_checkpoint(tmp_path: Path) -> None:
    runner = JobRunner(tmp_path / "j.db")
    steps: list[int] = []

    def work(progress, token):  # noqa: ANN001, ANN202
        # Runs until cancelled (the cap only keeps a broken runner from hanging the suite),
        # so the test does not depend on how fast this machine is.
        for i in range(100_000):
            progress(i / 100_000, f"step {i}")
            steps.append(i)
            time.sleep(0.001)
        return {}

    job = runner.submit("long", {}, work)
    _until(lambda: len(steps) > 3, timeout_s=60)
    # asked; it stops at its next progress call, which may come before cancel() returns
    assert runner.cancel(job.id).status in ("running", "cancelled")
    rec = runner.wait(job.id, 60)
    assert rec.status == "cancelled" and rec.error == "cancelled on request"
    assert len(steps) < 100_000
    runner.close()


_CHILD_RUNNER = """
import sys, time
from api.jobs import JobRunner
runner = JobRunner(sys.argv[1])
def work(progress, token):
    for i in range(600_000):
        progress(0.0, "step")
        time.sleep(0.001)
    return {}
running = runner.submit("long", {}, work)
queued = runner.submit("long", {}, work)
while runner.get(running.id).status != "running":
    time.sleep(0.01)
print(running.id, queued.id, flush=True)
while runner.get(running.id).status == "running":
    time.sleep(0.02)
time.sleep(0.2)
"""


def _child_runner(db: Path) -> tuple[subprocess.Popen[str], str, str]:
    """Another server process with a running and a queued job on the same job file."""
    proc = subprocess.Popen([sys.executable, "-c", _CHILD_RUNNER, str(db)], stdout=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parents[2])
    assert proc.stdout is not None
    running, queued = proc.stdout.readline().split()
    return proc, running, queued


def test_restart_marks_jobs_of_a_dead_process_failed(tmp_path: Path) -> None:
    proc, running, queued = _child_runner(tmp_path / "j.db")
    proc.kill()  # the process dies with its jobs unfinished
    proc.wait(30)
    again = JobRunner(tmp_path / "j.db")
    for jid in (running, queued):
        rec = again.get(jid)
        assert rec is not None and rec.status == "failed" and rec.error == INTERRUPTED
    again.close()
    assert sqlite3.connect(tmp_path / "j.db").execute("select count(*) from jobs").fetchone()[0] == 2


def test_a_sibling_process_sees_and_cancels_jobs_of_another(tmp_path: Path) -> None:
    """twin serve --workers N: a job runs in the process that took it; any process reads it, and
    a cancel request from another process stops it at its next checkpoint."""
    proc, running, queued = _child_runner(tmp_path / "j.db")
    try:
        sibling = JobRunner(tmp_path / "j.db")  # a second worker starting: leaves live jobs alone
        assert sibling.get(running).status == "running" and sibling.get(queued).status == "queued"
        assert sibling.cancel(queued).status == "cancelled"
        assert sibling.cancel(running).message == "cancelling"
        rec = sibling.wait(running, 60)
        assert rec.status == "cancelled" and rec.error == "cancelled on request"
        assert proc.wait(60) == 0
        assert sibling.get(queued).status == "cancelled"  # the child never started it
        sibling.close()
    finally:
        proc.kill()


def test_settings_from_env_and_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "twin.yaml"
    f.write_text("store: sqlite:///from-file.db\nrate_limit_burst: 7\ndevice: cpu\n")
    monkeypatch.setenv("TWIN_RATE_LIMIT_BURST", "9")
    s = load_settings(f)
    assert s.store == "sqlite:///from-file.db" and s.rate_limit_burst == 9
    assert Settings().cors_origins == []
    f.write_text("stor: typo\n")
    with pytest.raises(ValueError, match="unknown setting"):
        load_settings(f)
    with pytest.raises(ValidationError):
        Settings(cors_origins=["*"])
    monkeypatch.setenv("TWIN_DEVICE", "tpu")
    with pytest.raises(ValidationError):
        Settings()
