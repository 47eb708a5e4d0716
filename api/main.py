"""The app factory: ``create_app(settings)`` wires settings, services, middleware and routers.

Nothing is opened at import time: ``create_app`` opens the store, key file, audit log and job
runner, and the app's lifespan closes them when the server stops.
"""

from __future__ import annotations

import asyncio
import copy
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.audit import AuditLog, AuditMiddleware
from api.deps import Services, reject_unknown_query
from api.errors import install_error_handlers
from api.jobs import JobRunner
from api.middleware import AccessLogMiddleware, BodySizeLimitMiddleware
from api.openapi import build_openapi
from api.routes import ROUTERS
from api.security import KeyStore, RateLimiter
from api.settings import Settings, load_settings
from api.version import version
from graph import open_store
from service import ModelRegistry, set_torch_threads

__all__ = ["create_app", "uvicorn_config"]


class _AllowEveryMethod:
    """A 405 answer's ``Allow`` lists every method of the path (RFC 9110), as the OpenAPI document
    declares them. Starlette names only the methods of the first route matching the path, so
    ``OPTIONS /v1/models`` said ``POST`` although ``GET /v1/models`` exists too."""

    def __init__(self, app: ASGIApp, routes_of: FastAPI) -> None:
        self.app = app
        self.routes_of = routes_of
        self._paths: list[tuple[re.Pattern[str], set[str]]] | None = None

    def _methods(self, path: str) -> set[str]:
        if self._paths is None:
            table = []
            for template, item in self.routes_of.openapi().get("paths", {}).items():
                pattern = re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template))
                methods = {m.upper() for m in item if m.lower() in _HTTP_METHODS}
                if "GET" in methods:
                    methods.add("HEAD")
                table.append((re.compile(f"^{pattern}$"), methods))
            self._paths = table
        return set().union(*(methods for pattern, methods in self._paths if pattern.match(path)))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_allow(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 405:
                methods = self._methods(scope["path"])
                if methods:
                    headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"allow"]
                    message = {**message, "headers": [*headers, (b"allow", ", ".join(sorted(methods)).encode())]}
            await send(message)

        await self.app(scope, receive, send_allow)


_HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def _open_services(settings: Settings) -> Services:
    store = open_store(settings.store)
    try:
        return Services(
            settings=settings,
            store=store,
            keys=KeyStore(settings.keys_db),
            audit=AuditLog(settings.audit_log),
            jobs=JobRunner(settings.jobs_db, workers=settings.job_workers, max_queued=settings.job_queue_max),
            limiter=RateLimiter(settings.rate_limit_per_minute, settings.rate_limit_burst),
            registry=ModelRegistry(settings.model_path, device=settings.device),
            compute=asyncio.Semaphore(settings.compute_slots),
        )
    except BaseException:
        store.close()
        raise


def create_app(settings: Settings | None = None) -> FastAPI:
    """A FastAPI app serving the v1 API with ``settings`` (default: from the environment)."""
    settings = settings or load_settings()
    services = _open_services(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        set_torch_threads(settings.torch_threads)  # the server process owns torch's thread pool
        try:
            yield
        finally:
            services.jobs.close()
            services.keys.close()
            services.audit.close()
            services.store.close()

    app = FastAPI(
        title="patient-twin API",
        version=version(),
        description=(
            "Patient knowledge graphs, digital twins and what-if treatment scenarios. "
            "Every endpoint except health needs an API key (`Authorization: Bearer ...`) with the scope it names; "
            "every error is an RFC 9457 problem document."
        ),
        lifespan=lifespan,
        dependencies=[Depends(reject_unknown_query)],
    )
    app.state.services = services
    install_error_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    # Added innermost first: CORS, then the complete Allow header, size limit, audit, access log (outermost).
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.add_middleware(_AllowEveryMethod, routes_of=app)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_request_bytes)
    app.add_middleware(AuditMiddleware, log=services.audit)
    app.add_middleware(AccessLogMiddleware)

    def openapi() -> dict[str, Any]:
        return build_openapi(app)

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def uvicorn_kwargs(app: Any, host: str = "127.0.0.1", port: int = 8000, **kwargs: Any) -> dict[str, Any]:
    """Arguments of ``uvicorn.Config``/``uvicorn.run`` with uvicorn's access log off (it would
    print URLs with patient ids and query strings); :mod:`api.middleware` logs route templates
    instead. ``app`` is an app or, for several worker processes, its import string."""
    from uvicorn.config import LOGGING_CONFIG

    log_config = copy.deepcopy(LOGGING_CONFIG)
    log_config["loggers"]["api"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    kwargs.setdefault("log_config", log_config)
    return {"app": app, "host": host, "port": port, "access_log": False, "server_header": False, **kwargs}


def uvicorn_config(app: FastAPI, host: str = "127.0.0.1", port: int = 8000, **kwargs: Any) -> Any:
    """A ``uvicorn.Config`` for one in-process server (see :func:`uvicorn_kwargs`)."""
    import uvicorn

    return uvicorn.Config(**uvicorn_kwargs(app, host=host, port=port, **kwargs))
