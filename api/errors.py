"""Every error leaves the service as ``application/problem+json`` (RFC 9457).

Domain errors are mapped to HTTP here, in one place:

    RequestValidationError  -> 422  (``errors`` lists each failing location and message)
    ConflictError           -> 409  (``record`` names the resource that would touch another patient's records)
    RecordError             -> 422  (``record`` names file, resource, field and reason)
    PlanError               -> 422  (``plan`` names the plan, field and reason)
    QueryError              -> 422
    ModelError              -> 404  (no trained model of that name)
    StoreError              -> 503
    ProblemError            -> its own status (404 unknown patient, 401/403 auth, 429 rate, 413 size, 409)
    HTTPException           -> its status (404 unknown route, 405 wrong method)
    anything else           -> 500, with no detail (a bug; logged by type and route only)
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.schemas import FieldProblem, PlanProblem, Problem, RecordProblem
from core import ConflictError, ModelError, PlanError, QueryError, RecordError, StoreError, TwinError

__all__ = ["PROBLEM_MEDIA_TYPE", "ProblemError", "install_error_handlers", "problem_response"]

PROBLEM_MEDIA_TYPE = "application/problem+json"
_log = logging.getLogger("api.errors")

_TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    406: "Not acceptable",
    409: "Conflict",
    413: "Payload too large",
    415: "Unsupported media type",
    422: "Unprocessable content",
    429: "Too many requests",
    500: "Internal server error",
    503: "Service unavailable",
}


class ProblemError(Exception):
    """An HTTP-level failure raised by the API layer itself (not by the libraries)."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        kind: str | None = None,
        headers: dict[str, str] | None = None,
        **extensions: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.kind = kind
        self.headers = headers or {}
        self.extensions = extensions


def _type_uri(kind: str) -> str:
    return f"https://patient-twin.dev/problems/{kind}"


def problem_response(
    status: int,
    detail: str,
    *,
    request: Request | None = None,
    kind: str | None = None,
    headers: dict[str, str] | None = None,
    **extensions: Any,
) -> JSONResponse:
    """A problem+json response; ``instance`` is the request path (never its query string)."""
    doc = Problem(
        type=_type_uri(kind) if kind else "about:blank",
        title=_TITLES.get(status, "Error"),
        status=status,
        detail=detail,
        instance=request.url.path if request is not None else None,
        **extensions,
    )
    return JSONResponse(
        doc.model_dump(mode="json", exclude_none=True),
        status_code=status,
        headers=headers,
        media_type=PROBLEM_MEDIA_TYPE,
    )


def _loc_field(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header", "cookie"):
        parts = parts[1:]
    return ".".join(parts) or "(request)"


async def _on_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = [
        FieldProblem(
            location=str(e["loc"][0]) if e.get("loc") else "request",
            field=_loc_field(tuple(e.get("loc", ()))),
            message=str(e.get("msg", "invalid value")),
        )
        for e in exc.errors()
    ]
    summary = "; ".join(f"{e.location} {e.field}: {e.message}" for e in errors[:5])
    return problem_response(422, f"request is invalid: {summary}", request=request, kind="validation", errors=errors)


async def _on_record(request: Request, exc: RecordError) -> JSONResponse:
    rec = RecordProblem(**exc.to_dict())
    return problem_response(422, str(exc), request=request, kind="invalid-record", record=rec)


async def _on_conflict(request: Request, exc: ConflictError) -> JSONResponse:
    rec = RecordProblem(**exc.to_dict())
    return problem_response(409, str(exc), request=request, kind="conflict", record=rec)


async def _on_plan(request: Request, exc: PlanError) -> JSONResponse:
    plan = PlanProblem(plan=exc.plan, field=exc.field, reason=exc.reason)
    return problem_response(422, str(exc), request=request, kind="invalid-plan", plan=plan)


async def _on_query(request: Request, exc: QueryError) -> JSONResponse:
    return problem_response(422, str(exc), request=request, kind="invalid-query")


async def _on_model(request: Request, exc: ModelError) -> JSONResponse:
    return problem_response(404, str(exc), request=request, kind="unknown-model")


async def _on_store(request: Request, exc: StoreError) -> JSONResponse:
    text = str(exc)
    store = getattr(getattr(request.app.state, "services", None), "store", None)
    if store is not None:  # the store's URL names a file on the server: never in an answer
        url = str(store.url)
        for secret in (url, url.split(":///", 1)[-1]):
            if secret:
                text = text.replace(secret, "the graph store")
    return problem_response(503, f"graph store unavailable: {text}", request=request, kind="store-unavailable")


async def _on_twin(request: Request, exc: TwinError) -> JSONResponse:
    return problem_response(422, str(exc), request=request, kind="invalid-request")


async def _on_problem(request: Request, exc: ProblemError) -> JSONResponse:
    return problem_response(
        exc.status, exc.detail, request=request, kind=exc.kind, headers=exc.headers, **exc.extensions
    )


async def _on_http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    detail = exc.detail if isinstance(exc.detail, str) else _TITLES.get(exc.status_code, "Error")
    return problem_response(exc.status_code, detail, request=request, headers=dict(exc.headers or {}))


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    route = getattr(request.scope.get("route"), "path", "?")
    # Type and route template only: messages of unexpected errors may quote patient data.
    _log.error("unhandled %s in %s %s", type(exc).__name__, request.method, route)
    return problem_response(500, "internal error; the request was not completed", request=request, kind="internal")


def install_error_handlers(app: FastAPI) -> None:
    """Register the mapping in the module docstring on ``app``."""
    app.add_exception_handler(RequestValidationError, _on_validation)  # type: ignore[arg-type]
    app.add_exception_handler(ConflictError, _on_conflict)  # type: ignore[arg-type]
    app.add_exception_handler(RecordError, _on_record)  # type: ignore[arg-type]
    app.add_exception_handler(PlanError, _on_plan)  # type: ignore[arg-type]
    app.add_exception_handler(QueryError, _on_query)  # type: ignore[arg-type]
    app.add_exception_handler(ModelError, _on_model)  # type: ignore[arg-type]
    app.add_exception_handler(StoreError, _on_store)  # type: ignore[arg-type]
    app.add_exception_handler(TwinError, _on_twin)  # type: ignore[arg-type]
    app.add_exception_handler(ProblemError, _on_problem)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _on_http)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _on_unexpected)
