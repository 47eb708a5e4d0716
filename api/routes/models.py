"""``POST /v1/models`` (train in the background), ``GET /v1/models``, ``GET /v1/jobs[/{id}]``,
``DELETE /v1/jobs/{id}`` (cancel).

Jobs belong to the key that submitted them: an ``admin`` key sees and cancels every job, a
``sim:run`` key its own (forecast and scenario jobs); anyone else's job reads as unknown (404).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Response, status

from api.deps import AuditDep, CurrentKey, JobsDep, ServicesDep, require_scope
from api.errors import ProblemError
from api.jobs import JobRecord, JobRunner, ProgressFn, job_out, submit_job
from api.openapi import problems
from api.schemas import JobList, JobOut, ModelList, ModelOut, TrainRequest
from api.security import ApiKey
from service import CancelToken, train_config, train_isolated

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["models"])

_QUEUE_FULL: dict[int | str, dict[str, Any]] = {429: {"description": "The API key's request limit is reached, or the job queue is full; "
                                    "see Retry-After."}}


@router.post(
    "/models",
    response_model=JobOut,
    status_code=status.HTTP_202_ACCEPTED,
    summary="Train a model on the store's patients as a background job (in its own process).",
    dependencies=[Depends(require_scope("admin"))],
    responses={**problems(409), **_QUEUE_FULL},
)
def post_model(body: TrainRequest, key: CurrentKey, services: ServicesDep, jobs: JobsDep, audit: AuditDep) -> JobOut:
    audit.record("model.train")
    registry, settings = services.registry, services.settings
    if not body.replace and registry.find(body.name) is not None:
        raise ProblemError(409, f"model {body.name!r} exists; send replace=true to overwrite it", kind="exists")
    overrides = body.model_dump(exclude={"name", "replace"})
    config = train_config(**overrides, device=settings.device, progress=False)

    def run(progress: ProgressFn, token: CancelToken) -> dict[str, object]:
        return train_isolated(settings.store, registry, body.name, config, threads=settings.torch_threads,
                              on_progress=progress, cancel=token)

    return submit_job(jobs, "train", {"name": body.name, **overrides}, run, owner=key.id)


@router.get(
    "/models",
    response_model=ModelList,
    summary="The trained models: name, training cohort and date, cohort specification (targets, treatments, time scales).",
    dependencies=[Depends(require_scope("sim:run"))],
)
def get_models(services: ServicesDep) -> ModelList:
    models = [ModelOut(**m.summary(), report=m.report) for m in services.registry.list()]
    return ModelList(count=len(models), models=models)


def _visible_job(jobs: JobRunner, job_id: str, key: ApiKey) -> JobRecord:
    rec = jobs.get(job_id)
    if rec is None or not (key.allows("admin") or rec.owner == key.id):
        raise ProblemError(404, f"no job with id {job_id!r}", kind="unknown-job")
    return rec


@router.get(
    "/jobs/{job_id}",
    response_model=JobOut,
    summary="State and progress of a background job (admin: any job; otherwise the key's own).",
    dependencies=[Depends(require_scope("sim:run"))],
    responses=problems(404),
)
def get_job(job_id: str, key: CurrentKey, jobs: JobsDep) -> JobOut:
    return job_out(_visible_job(jobs, job_id, key))


@router.delete(
    "/jobs/{job_id}",
    response_model=JobOut,
    summary="Cancel a background job: a queued one at once (200), a running one at its next checkpoint "
            "(202, then `cancelled`).",
    dependencies=[Depends(require_scope("sim:run"))],
    responses={**problems(404, 409), 202: {"model": JobOut, "description": "Running; it stops at its next checkpoint."}},
)
def delete_job(job_id: str, key: CurrentKey, jobs: JobsDep, response: Response) -> JobOut:
    rec = _visible_job(jobs, job_id, key)
    if rec.status in ("succeeded", "failed"):
        raise ProblemError(409, f"job {job_id!r} has already {rec.status}; there is nothing to cancel", kind="finished")
    after = jobs.cancel(job_id) or rec
    if after.status == "running":
        response.status_code = status.HTTP_202_ACCEPTED
    return job_out(after)


@router.get(
    "/jobs",
    response_model=JobList,
    summary="Background jobs, newest first (admin: all; otherwise the key's own).",
    dependencies=[Depends(require_scope("sim:run"))],
)
def get_jobs(key: CurrentKey, jobs: JobsDep) -> JobList:
    out = [job_out(j) for j in jobs.list(owner=None if key.allows("admin") else key.id)]
    return JobList(count=len(out), jobs=out)
