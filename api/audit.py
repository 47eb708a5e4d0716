"""Append-only audit log of every access to a patient's data.

Each line is one JSON object: ``time`` (UTC), ``request_id``, ``key_id`` (``null`` when no
valid key was shown), ``action`` (e.g. ``patient.timeline``), ``patient_id`` (``null`` for
cohort-wide actions), ``method``, ``route`` (the route *template*, never the URL or query
string) and ``status`` (the HTTP status finally sent). Request and response bodies are never
written. An action that answers with patients writes one line per patient it names (a
``cohort.query`` that matched three patients: three lines with one ``request_id``; one that
matched nobody or failed: one line with ``patient_id`` ``null``).

Routes register what they touch on the request's :class:`AuditContext`; the
:class:`AuditMiddleware` writes the lines when the status is known and before the response is
sent, including for requests refused by authentication or failing with an error.
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["AuditContext", "AuditLog", "AuditMiddleware"]


class AuditLog:
    """A JSON-lines file opened for append; each line is written and flushed under a lock."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        # O_APPEND: every write lands at the end even if another process appends too.
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._file = os.fdopen(fd, "a", encoding="utf-8")

    def write(self, entries: list[dict[str, Any]]) -> None:
        """Append ``entries`` (already stripped of payload) and flush them to the OS."""
        if not entries:
            return
        text = "".join(json.dumps(e, sort_keys=True, separators=(",", ":")) + "\n" for e in entries)
        with self._lock:
            self._file.write(text)
            self._file.flush()

    def close(self) -> None:
        with self._lock:
            self._file.close()


@dataclass
class AuditContext:
    """Per-request record of who touched which patients; filled in by dependencies and routes."""

    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    key_id: str | None = None
    events: list[tuple[str, str | None]] = field(default_factory=list)

    def record(self, action: str, patient_ids: list[str] | tuple[str, ...] | str | None = None) -> None:
        """Note ``action`` on each patient in ``patient_ids`` (``None``: a cohort-wide action)."""
        if patient_ids is None or isinstance(patient_ids, str):
            self.events.append((action, patient_ids))
        else:
            self.events.extend((action, p) for p in patient_ids)


class AuditMiddleware:
    """Pure ASGI middleware: gives each request an :class:`AuditContext`, writes it with the status."""

    def __init__(self, app: ASGIApp, log: AuditLog) -> None:
        self.app = app
        self.log = log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        ctx = AuditContext()
        scope.setdefault("state", {})["audit"] = ctx
        written = False

        def flush(status: int) -> None:
            nonlocal written
            written = True
            if not ctx.events:
                return
            route = getattr(scope.get("route"), "path", None)
            now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
            self.log.write(
                [
                    {
                        "time": now,
                        "request_id": ctx.request_id,
                        "key_id": ctx.key_id,
                        "action": action,
                        "patient_id": pid,
                        "method": scope.get("method"),
                        "route": route,
                        "status": status,
                    }
                    for action, pid in ctx.events
                ]
            )

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                # Written before the client sees the response: an answered request is always audited.
                flush(int(message["status"]))
                message["headers"] = [*message.get("headers", []), (b"x-request-id", ctx.request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            if not written:  # the app failed before responding (the server answers 500)
                flush(500)
