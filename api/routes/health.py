"""``GET /healthz`` (the process answers) and ``GET /readyz`` (the store answers)."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import StoreDep
from api.openapi import problems
from api.schemas import Health, Readiness
from api.version import version
from graph import NodeQuery, NodeType

__all__ = ["router"]

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, summary="Liveness: the process is serving requests.")
def healthz() -> Health:
    return Health(version=version())


@router.get("/readyz", response_model=Readiness, summary="Readiness: the graph store answers.", responses=problems(503))
def readyz(store: StoreDep) -> Readiness:
    store.find_nodes(NodeQuery(types=(NodeType.PATIENT,), limit=1))  # StoreError -> 503 problem
    return Readiness(status="ready", store="embedded" if store.url.startswith("sqlite") else "neo4j")
