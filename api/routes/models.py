"""``POST /v1/models`` (train in the background), ``GET /v1/models``, ``GET /v1/jobs[/{id}]``."""

from __future__ import annotations

from fastapi import APIRouter, Depends, status

from api.deps import AuditDep, CurrentKey, JobsDep, ServicesDep, require_scope
from api.errors import ProblemError
from api.jobs import JobRecord, ProgressFn
from api.openapi import problems
from api.schemas import JobList, JobOut, ModelList, ModelOut, TrainRequest
from service import train_config, train_isolated

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["models"])


def job_out(j: JobRecord) -> JobOut:
    return JobOut(
        id=j.id, kind=j.kind, status=j.status, progress=j.progress, message=j.message,
        created=j.created, updated=j.updated, result=j.result, error=j.error,
    )


@router.post(
    "/models",
    response_model=JobOut,
    status_code=status.HTTP_202_ACCEPTED,
    summary="Train a model on the store's patients as a background job (in its own process).",
    dependencies=[Depends(require_scope("admin"))],
    responses=problems(409),
)
def post_model(body: TrainRequest, key: CurrentKey, services: ServicesDep, jobs: JobsDep, audit: AuditDep) -> JobOut:
    audit.record("model.train")
    registry, settings = services.registry, services.settings
    if not body.replace and registry.find(body.name) is not None:
        raise ProblemError(409, f"model {body.name!r} exists; send replace=true to overwrite it", kind="exists")
    overrides = body.model_dump(exclude={"name", "replace"})
    config = train_config(**overrides, device=settings.device, progress=False)

    def run(progress: ProgressFn) -> dict[str, object]:
        return train_isolated(settings.store, registry, body.name, config, threads=settings.torch_threads,
                              on_progress=progress)

    return job_out(jobs.submit("train", {"name": body.name, **overrides}, run, owner=key.id))


@router.get(
    "/models",
    response_model=ModelList,
    summary="The trained models: name, training cohort and date, targets, drugs.",
    dependencies=[Depends(require_scope("sim:run"))],
)
def get_models(services: ServicesDep) -> ModelList:
    models = [ModelOut(**m.summary(), report=m.report) for m in services.registry.list()]
    return ModelList(count=len(models), models=models)


@router.get(
    "/jobs/{job_id}",
    response_model=JobOut,
    summary="State and progress of a background job.",
    dependencies=[Depends(require_scope("admin"))],
    responses=problems(404),
)
def get_job(job_id: str, jobs: JobsDep) -> JobOut:
    rec = jobs.get(job_id)
    if rec is None:
        raise ProblemError(404, f"no job with id {job_id!r}", kind="unknown-job")
    return job_out(rec)


@router.get(
    "/jobs",
    response_model=JobList,
    summary="All background jobs, newest first.",
    dependencies=[Depends(require_scope("admin"))],
)
def get_jobs(jobs: JobsDep) -> JobList:
    out = [job_out(j) for j in jobs.list()]
    return JobList(count=len(out), jobs=out)
