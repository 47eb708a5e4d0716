"""OpenAPI helpers: every documented error is a ``Problem`` in ``application/problem+json``.

Routes declare which errors they can produce with :func:`problems`; :func:`build_openapi`
fills in the media type and schema for each, replaces FastAPI's default 422 schema with
``Problem``, and documents the errors every authenticated operation can produce (401, 403,
429; 400 and 413 where there is a body).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from api.errors import PROBLEM_MEDIA_TYPE
from api.schemas import Problem

__all__ = ["build_openapi", "problems"]

_DESCRIPTIONS = {
    400: "The request body cannot be decoded (e.g. it is not UTF-8).",
    401: "No API key, or the key is unknown, wrong or revoked.",
    403: "The API key lacks the scope this operation needs.",
    404: "The patient (or job) does not exist.",
    409: "The operation is not possible in the current configuration.",
    413: "The request body is larger than the configured limit.",
    415: "The request's Content-Type is not accepted here.",
    422: "The request (or a submitted record) is invalid; the problem names the field.",
    429: "The API key's request limit is reached; see Retry-After.",
    503: "The graph store is unavailable.",
}


def problems(*codes: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` entries documenting ``codes`` as problem documents."""
    return {c: {"description": _DESCRIPTIONS[c]} for c in codes}


def _problem_content() -> dict[str, Any]:
    return {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}


def build_openapi(app: FastAPI) -> dict[str, Any]:
    """The app's OpenAPI document with problem+json errors (cached on the app)."""
    if app.openapi_schema:
        return app.openapi_schema
    doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    comps = doc.setdefault("components", {}).setdefault("schemas", {})
    problem_schema = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, sub in problem_schema.pop("$defs", {}).items():
        comps[name] = sub
    comps["Problem"] = problem_schema
    for path_item in doc.get("paths", {}).values():
        for op in path_item.values():
            if not isinstance(op, dict) or "responses" not in op:
                continue
            responses = op["responses"]
            secured = bool(op.get("security"))
            if secured:
                for code in (401, 403, 429):
                    responses.setdefault(str(code), {"description": _DESCRIPTIONS[code]})
            if "requestBody" in op:
                responses.setdefault("400", {"description": _DESCRIPTIONS[400]})
                responses.setdefault("413", {"description": _DESCRIPTIONS[413]})
            if any(p.get("in") in ("query", "path") for p in op.get("parameters", [])) or "requestBody" in op:
                responses.setdefault("422", {"description": _DESCRIPTIONS[422]})
            for code, resp in responses.items():
                if code[0] in "45":
                    resp["content"] = _problem_content()
                    if code == "422":
                        resp["description"] = _DESCRIPTIONS[422]
    for unused in ("HTTPValidationError", "ValidationError"):
        comps.pop(unused, None)
    app.openapi_schema = doc
    return doc
