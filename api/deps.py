"""Typed FastAPI dependencies: the services of the running app, the caller's key, audit.

``Services`` holds what ``create_app`` opened (store, key store, jobs, rate limiter); routes
reach it only through these ``Annotated`` aliases, so tests can swap any of them with
``app.dependency_overrides``.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, get_args, get_origin

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.audit import AuditContext, AuditLog
from api.errors import ProblemError
from api.jobs import JobRunner
from api.security import ApiKey, KeyStore, RateLimiter
from api.settings import Settings
from graph import GraphStore, NodeQuery
from service import ModelRegistry

__all__ = [
    "AuditDep",
    "CurrentKey",
    "ExistingPatient",
    "JobsDep",
    "Services",
    "ServicesDep",
    "SettingsDep",
    "StoreDep",
    "audited",
    "reject_unknown_query",
    "require_scope",
]


@dataclass
class Services:
    """Long-lived objects of one app instance (opened in the lifespan, closed at shutdown)."""

    settings: Settings
    store: GraphStore
    keys: KeyStore
    audit: AuditLog
    jobs: JobRunner
    limiter: RateLimiter
    registry: ModelRegistry
    compute: asyncio.Semaphore  # settings.compute_slots: model work computed at once (FIFO)


def _services(request: Request) -> Services:
    return request.app.state.services


ServicesDep = Annotated[Services, Depends(_services)]


def _store(services: ServicesDep) -> GraphStore:
    return services.store


def _settings(services: ServicesDep) -> Settings:
    return services.settings


def _jobs(services: ServicesDep) -> JobRunner:
    return services.jobs


def _audit(request: Request) -> AuditContext:
    ctx = request.scope.get("state", {}).get("audit")
    if ctx is None:  # app used without its middleware (should not happen): audit into the void is not allowed
        raise RuntimeError("audit middleware is not installed")
    return ctx


StoreDep = Annotated[GraphStore, Depends(_store)]
SettingsDep = Annotated[Settings, Depends(_settings)]
JobsDep = Annotated[JobRunner, Depends(_jobs)]
AuditDep = Annotated[AuditContext, Depends(_audit)]

_bearer = HTTPBearer(auto_error=False, description="An API key created with `twin api-key create`.")

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="patient-twin"'}


def _current_key(
    services: ServicesDep,
    audit: AuditDep,
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> ApiKey:
    if creds is None or not creds.credentials:
        raise ProblemError(401, "an API key is required: send 'Authorization: Bearer <key>'", kind="unauthorized",
                           headers=_CHALLENGE)
    key = services.keys.verify(creds.credentials)
    if key is None:
        raise ProblemError(401, "the API key is not valid (unknown, wrong or revoked)", kind="unauthorized",
                           headers=_CHALLENGE)
    audit.key_id = key.id
    wait = services.limiter.acquire(key.id)
    if wait > 0:
        # Retry-After counts whole seconds; the message names the same (never "0.0 s")
        retry = max(1, math.ceil(wait))
        raise ProblemError(429, f"request limit of this API key reached; retry in {retry} s", kind="rate-limited",
                           headers={"Retry-After": str(retry)})
    return key


CurrentKey = Annotated[ApiKey, Depends(_current_key)]


def require_scope(scope: str) -> Callable[[ApiKey], ApiKey]:
    """A dependency that admits keys allowed ``scope`` (401 without a key, 403 without the scope)."""

    def check(key: CurrentKey) -> ApiKey:
        if not key.allows(scope):
            raise ProblemError(403, f"this API key lacks the {scope!r} scope", kind="forbidden")
        return key

    check.__name__ = f"require_{scope.replace(':', '_')}"
    return check


def audited(action: str) -> Callable[[Request, AuditContext], None]:
    """A dependency noting ``action`` on the path's ``patient_id`` (declare it before auth)."""

    def note(request: Request, audit: AuditDep) -> None:
        audit.record(action, request.path_params.get("patient_id"))

    note.__name__ = f"audit_{action.replace('.', '_')}"
    return note


def _existing_patient(patient_id: str, store: StoreDep) -> str:
    if not store.find_nodes(NodeQuery(patient_id=patient_id, limit=1)):
        raise ProblemError(404, f"no patient with id {patient_id!r}", kind="unknown-patient")
    return patient_id


#: The path's ``patient_id`` after checking the store has records for it (404 otherwise).
ExistingPatient = Annotated[str, Depends(_existing_patient)]


def reject_unknown_query(request: Request) -> None:
    """422 for query parameters the route does not declare (a typo must not be silently ignored)."""
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None or not request.query_params:
        return
    known: set[str] = set()
    single: set[str] = set()
    todo = [dependant]
    while todo:  # the route's own parameters and those of its dependencies
        d = todo.pop()
        known.update(p.alias for p in d.query_params)
        single.update(p.alias for p in d.query_params if not _takes_many(p.field_info.annotation))
        todo.extend(d.dependencies)
    unknown = sorted(set(request.query_params.keys()) - known)
    if unknown:
        raise ProblemError(422, f"unknown query parameter(s) {unknown}; this operation accepts "
                                f"{sorted(known) or 'none'}", kind="validation")
    repeated = sorted(k for k in single if len(request.query_params.getlist(k)) > 1)
    if repeated:  # the framework would silently keep the last value
        raise ProblemError(422, f"query parameter(s) {repeated} take one value each but were given several",
                           kind="validation")


def _takes_many(annotation: Any) -> bool:
    """Whether a query parameter's type is a list (``?x=1&x=2``), also inside ``Optional``."""
    origin = get_origin(annotation)
    if origin in (list, tuple, set, frozenset):
        return True
    return any(_takes_many(a) for a in get_args(annotation)) if origin is not None else False
