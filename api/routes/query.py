"""``POST /v1/query`` (structured cohort predicate) and ``POST /v1/cypher`` (read-only, Neo4j only).

A predicate past :data:`graph.MAX_PREDICATE_DEPTH` levels of ``all``/``any``/``not`` or
:data:`graph.MAX_PREDICATE_TERMS` terms is refused with 422 before it reaches the store. The
audit log gets one ``cohort.query`` line per patient the answer names (ids only), or one line
with no patient when the cohort is empty.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends

from api.deps import AuditDep, SettingsDep, StoreDep, require_scope
from api.errors import ProblemError
from api.openapi import problems
from api.schemas import CohortQuery, CohortResult, CypherQuery, CypherResult
from graph import cohort, predicate_from_dict, read_cypher

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["query"])


@router.post(
    "/query",
    response_model=CohortResult,
    summary="Patients for whom a composed predicate holds as of a time.",
    dependencies=[Depends(require_scope("graph:read"))],
)
def post_query(body: CohortQuery, store: StoreDep, audit: AuditDep) -> CohortResult:
    try:
        ids = cohort(store, predicate_from_dict(body.predicate_dict()), as_of=body.as_of)
    except BaseException:
        audit.record("cohort.query")  # a refused or failed query is audited too, naming nobody
        raise
    audit.record("cohort.query", ids or None)
    return CohortResult(count=len(ids), patient_ids=ids)


@router.post(
    "/cypher",
    response_model=CypherResult,
    summary="Run a read-only, parameterised Cypher query (Neo4j stores only).",
    dependencies=[Depends(require_scope("graph:read"))],
    responses=problems(409),
)
def post_cypher(body: CypherQuery, store: StoreDep, settings: SettingsDep, audit: AuditDep) -> CypherResult:
    audit.record("cypher.query")
    if not store.url.startswith(("bolt", "neo4j")):
        raise ProblemError(409, "Cypher needs a Neo4j store; this service runs on the embedded store",
                           kind="not-supported")

    res = read_cypher(
        store, body.query, body.params, timeout_s=settings.cypher_timeout_s, row_limit=settings.cypher_row_limit
    )
    return CypherResult(columns=res.columns, rows=res.rows, truncated=res.truncated)
