"""Pure ASGI middleware: request size limit and a patient-data-free access log.

The access log line is ``METHOD ROUTE-TEMPLATE STATUS DURATION`` with the *template*
(``/v1/patients/{patient_id}/timeline``), so neither patient ids in paths nor query strings
ever reach application logs. Uvicorn's own access log is switched off (see
:func:`api.main.uvicorn_config`).
"""

from __future__ import annotations

import logging
import time

from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import problem_response

__all__ = ["AccessLogMiddleware", "BodySizeLimitMiddleware"]

access_log = logging.getLogger("api.access")


class BodySizeLimitMiddleware:
    """Refuse bodies above ``max_bytes`` with 413: early by ``Content-Length``, else while streaming."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                size = -1
            if size < 0:
                resp = problem_response(400, "Content-Length header is not a non-negative integer")
                await resp(scope, receive, send)
                return
            if size > self.max_bytes:
                resp = problem_response(
                    413, f"request body of {size} bytes exceeds the limit of {self.max_bytes} bytes", kind="too-large"
                )
                await resp(scope, receive, send)
                return
        seen = 0
        limit = self.max_bytes

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise HTTPException(413, f"request body exceeds the limit of {limit} bytes")
            return message

        await self.app(scope, limited_receive, send)


class AccessLogMiddleware:
    """One INFO line per request on ``api.access`` naming the route template, never the URL."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = getattr(scope.get("route"), "path", None) or "(no route)"
            access_log.info(
                "%s %s %d %.1fms", scope.get("method"), route, status, (time.perf_counter() - start) * 1000.0
            )
