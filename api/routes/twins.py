"""``POST /v1/twins/{id}/forecast`` and ``POST /v1/twins/{id}/scenarios`` (what-if plans), and
their background-job forms ``POST /v1/twins/{id}/forecast/jobs`` and ``.../scenarios/jobs``.

All call the application layer (:func:`service.forecast_patient`, :func:`service.simulate_patient`),
the same functions ``twin forecast`` and ``twin simulate`` call. With ``Accept:
application/fhir+json`` the synchronous routes answer a FHIR R4 Bundle (:mod:`service.fhir`) and
the job routes make that Bundle the job's ``result``.

Bounded cost: every request's cost (:mod:`service.limits`, trajectory-steps) is checked before
any solve. A synchronous request above ``max_request_cost`` is refused with 422 naming its
cost, the ceiling and the job endpoint; a job may cost up to ``max_job_cost``, reports
progress and can be cancelled (``DELETE /v1/jobs/{id}``).

Client disconnects: a synchronous request's work runs in a worker thread while the route
polls the connection; when the client goes away the work stops at its next checkpoint
(between ensemble members, solver chunks and quantile chunks; see :mod:`service.cancel`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import APIRouter, Depends, Request, status
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from api.deps import CurrentKey, ExistingPatient, JobsDep, Services, ServicesDep, audited, require_scope
from api.errors import ProblemError
from api.jobs import ProgressFn, submit_job
from api.openapi import problems
from api.schemas import (
    CostOut,
    DriverOut,
    ForecastOut,
    ForecastRequest,
    JobOut,
    LabForecastOut,
    ScenarioOut,
    ScenarioRequest,
)
from scenarios import Threshold
from service import (
    FHIR_JSON,
    Cancelled,
    CancelToken,
    ForecastRun,
    OverBudget,
    RequestCost,
    ScenarioRun,
    check_cost,
    forecast_bundle,
    forecast_cost,
    forecast_patient,
    model_stamp,
    report_days,
    scenario_bundle,
    scenario_cost,
    simulate_patient,
)

__all__ = ["router"]

router = APIRouter(prefix="/v1/twins", tags=["twins"])

T = TypeVar("T")

#: How often a synchronous request checks whether its client is still connected (seconds).
DISCONNECT_POLL_S = 0.1
#: Status recorded (audit, access log) for work stopped because the client went away; nobody reads it.
CLIENT_CLOSED = 499

_QUEUE_FULL: dict[int | str, dict[str, Any]] = {429: {"description": "The API key's request limit is reached, or the job queue is full; "
                                    "see Retry-After."}}


def _cost_out(cost: RequestCost | None, ceiling: int | None = None) -> CostOut | None:
    return None if cost is None else CostOut(**cost.to_dict(), ceiling=ceiling)


def _over_budget(exc: OverBudget) -> ProblemError:
    return ProblemError(422, str(exc), kind="over-budget", cost=_cost_out(exc.cost, exc.ceiling))


def _sync_hint(services: Services, what: str) -> str:
    return (f"or submit it as a background job with progress and cancellation: POST /v1/twins/{{patient_id}}/{what}/jobs "
            f"(jobs may cost up to {services.settings.max_job_cost:,})")


_JOB_HINT = "this is the ceiling of background jobs (setting max_job_cost)"


#: The other answer of the forecast and scenario routes: ``Accept: application/fhir+json``.
_FHIR_ANSWER: dict[int | str, dict[str, Any]] = {200: {"description": "With `Accept: application/fhir+json`: a FHIR R4 "
                                                       "Bundle (see README, Write-back: FHIR and MEDS).",
                                                       "content": {FHIR_JSON: {"schema": {"type": "object"}}}}}


def _wants_fhir(request: Request) -> bool:
    return FHIR_JSON in request.headers.get("accept", "")


# --------------------------------------------------------------------------- the work
def _run_forecast(services: Services, patient_id: str, body: ForecastRequest, *, max_cost: int, hint: str,
                  on_progress: ProgressFn | None = None, cancel: CancelToken | None = None) -> ForecastRun:
    try:
        return forecast_patient(services.store, services.registry, patient_id, model=body.model,
                                horizon=body.horizon_days, as_of=body.as_of, samples=body.n_samples,
                                step_days=body.step_days, seed=body.seed, explain=body.explain,
                                explain_lab=body.explain_lab, max_cost=max_cost, budget_hint=hint,
                                on_progress=on_progress, cancel=cancel)
    except OverBudget as exc:
        raise _over_budget(exc) from None


def _forecast(services: Services, patient_id: str, body: ForecastRequest, *, max_cost: int, hint: str,
              on_progress: ProgressFn | None = None, cancel: CancelToken | None = None) -> ForecastOut:
    run = _run_forecast(services, patient_id, body, max_cost=max_cost, hint=hint, on_progress=on_progress,
                        cancel=cancel)
    fc = run.forecast
    return ForecastOut(
        patient_id=patient_id, model=body.model, origin=fc.origin, horizon_days=fc.horizon_days,
        n_samples=fc.n_samples, n_members=fc.n_members, event_risk=fc.event_risk,
        labs={c: LabForecastOut(**lf.__dict__) for c, lf in fc.labs.items()}, cost=_cost_out(run.cost, max_cost),
        explained_lab=(body.explain_lab or next(iter(fc.labs), None)) if body.explain else None,
        explained_day=min(fc.horizon_days, 180.0) if body.explain else None,
        drivers=[DriverOut(**a.__dict__) for a in run.attributions],
    )


def _run_scenarios(services: Services, patient_id: str, body: ScenarioRequest, *, max_cost: int, hint: str,
                   on_progress: ProgressFn | None = None, cancel: CancelToken | None = None) -> ScenarioRun:
    try:
        return simulate_patient(services.store, services.registry, patient_id, body.plans, model=body.model,
                                horizon=body.horizon_days, as_of=body.as_of, objective=body.objective,
                                reference=body.reference,
                                thresholds=[Threshold(t.lab, t.op, t.value) for t in body.thresholds],
                                days=body.days, samples=body.n_samples, seed=body.seed, strict=body.strict,
                                max_cost=max_cost, budget_hint=hint, on_progress=on_progress, cancel=cancel)
    except OverBudget as exc:
        raise _over_budget(exc) from None


def _scenarios(services: Services, patient_id: str, body: ScenarioRequest, *, max_cost: int, hint: str,
               on_progress: ProgressFn | None = None, cancel: CancelToken | None = None) -> ScenarioOut:
    run = _run_scenarios(services, patient_id, body, max_cost=max_cost, hint=hint, on_progress=on_progress,
                         cancel=cancel)
    doc = run.result.to_dict(days=run.days)
    return ScenarioOut(
        patient_id=patient_id, model=body.model, origin=run.twin.as_of, plans=doc["plans"], reference=doc["reference"],
        horizon_days=doc["horizon_days"], n_samples=doc["n_samples"], seed=doc["seed"], quantiles=doc["quantiles"],
        labs=doc["labs"], events=doc["events"], flags=doc["flags"], results=doc["patients"][0]["plans"],
        ranking=run.ranking.to_dict() if run.ranking is not None else None, cost=_cost_out(run.cost, max_cost),
    )


async def _until_disconnect(request: Request, services: Services, work: Callable[[CancelToken], T]) -> T:
    """``work(token)`` in a worker thread once one of the process's compute slots is free
    (``settings.compute_slots``, first come first served); if the client disconnects meanwhile,
    ``token`` is set so the work stops at its next checkpoint (the answer, 499, goes nowhere)."""
    token = CancelToken()
    async with services.compute:
        if await request.is_disconnected():
            raise ProblemError(CLIENT_CLOSED, "the client disconnected before its turn; nothing was computed",
                               kind="client-closed")
        task = asyncio.ensure_future(run_in_threadpool(work, token))
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=DISCONNECT_POLL_S)
                if done:
                    break
                if not token.cancelled and await request.is_disconnected():
                    token.cancel("the client disconnected")
            try:
                return task.result()
            except Cancelled:
                raise ProblemError(CLIENT_CLOSED, "the client disconnected; the work was stopped",
                                   kind="client-closed") from None
        finally:
            if not task.done():  # this request itself was cancelled (server shutdown): stop the work too
                token.cancel("the request was abandoned")
                task.add_done_callback(lambda t: t.cancelled() or t.exception())


# --------------------------------------------------------------------------- synchronous
@router.post(
    "/{patient_id}/forecast",
    response_model=ForecastOut,
    summary="Forecast a patient's labs (median, 5-95 %) and event risks under current therapy.",
    description="Answered at once when its cost is within `max_request_cost` (the answer's `cost`); larger "
                "forecasts: `POST /v1/twins/{patient_id}/forecast/jobs`.",
    dependencies=[Depends(audited("twin.forecast")), Depends(require_scope("sim:run"))],
    responses={**problems(404), **_FHIR_ANSWER},
)
async def post_forecast(patient_id: ExistingPatient, body: ForecastRequest, services: ServicesDep,
                        request: Request) -> ForecastOut | JSONResponse:
    limit, hint = services.settings.max_request_cost, _sync_hint(services, "forecast")
    if _wants_fhir(request):
        doc = await _until_disconnect(request, services, lambda token: forecast_bundle(
            _run_forecast(services, patient_id, body, max_cost=limit, hint=hint, cancel=token),
            model_stamp(services.registry, body.model)))
        return JSONResponse(doc, media_type=FHIR_JSON)
    return await _until_disconnect(
        request, services, lambda token: _forecast(services, patient_id, body, max_cost=limit, hint=hint, cancel=token))


@router.post(
    "/{patient_id}/scenarios",
    response_model=ScenarioOut,
    summary="Simulate treatment plans on the patient's twin in one batched solve, compare and rank them.",
    description="Answered at once when its cost is within `max_request_cost` (the answer's `cost`); larger "
                "runs: `POST /v1/twins/{patient_id}/scenarios/jobs`.",
    dependencies=[Depends(audited("twin.scenarios")), Depends(require_scope("sim:run"))],
    responses={**problems(404), **_FHIR_ANSWER},
)
async def post_scenarios(patient_id: ExistingPatient, body: ScenarioRequest, services: ServicesDep,
                         request: Request) -> ScenarioOut | JSONResponse:
    limit, hint = services.settings.max_request_cost, _sync_hint(services, "scenarios")
    if _wants_fhir(request):
        doc = await _until_disconnect(request, services, lambda token: scenario_bundle(
            _run_scenarios(services, patient_id, body, max_cost=limit, hint=hint, cancel=token),
            model_stamp(services.registry, body.model)))
        return JSONResponse(doc, media_type=FHIR_JSON)
    return await _until_disconnect(
        request, services, lambda token: _scenarios(services, patient_id, body, max_cost=limit, hint=hint, cancel=token))


# --------------------------------------------------------------------------- jobs
def _checked(services: Services, cost: Callable[[Any], RequestCost], model: str) -> RequestCost:
    """The cost of a job (its model loaded, cached) if within ``max_job_cost``; 422 otherwise."""
    try:
        return check_cost(cost(services.registry.load(model)), services.settings.max_job_cost, _JOB_HINT)
    except OverBudget as exc:
        raise _over_budget(exc) from None


@router.post(
    "/{patient_id}/forecast/jobs",
    response_model=JobOut,
    status_code=status.HTTP_202_ACCEPTED,
    summary="Forecast as a background job (up to `max_job_cost`): progress at GET /v1/jobs/{id}, "
            "the forecast in its `result`.",
    dependencies=[Depends(audited("twin.forecast")), Depends(require_scope("sim:run"))],
    responses={**problems(404), **_QUEUE_FULL},
)
async def post_forecast_job(patient_id: ExistingPatient, body: ForecastRequest, key: CurrentKey,
                            services: ServicesDep, jobs: JobsDep, request: Request) -> JobOut:
    limit = services.settings.max_job_cost
    await run_in_threadpool(_checked, services, lambda m: forecast_cost(
        m, samples=body.n_samples, horizon_days=body.horizon_days, step_days=body.step_days, explain=body.explain),
        body.model)
    fhir = _wants_fhir(request)

    def run(progress: ProgressFn, token: CancelToken) -> dict[str, Any]:
        if fhir:  # the job's result is the Bundle
            return forecast_bundle(_run_forecast(services, patient_id, body, max_cost=limit, hint=_JOB_HINT,
                                                 on_progress=progress, cancel=token),
                                   model_stamp(services.registry, body.model))
        out = _forecast(services, patient_id, body, max_cost=limit, hint=_JOB_HINT, on_progress=progress, cancel=token)
        return out.model_dump(mode="json")

    params = {"patient_id": patient_id, **body.model_dump(mode="json")}
    return submit_job(jobs, "forecast", params, run, owner=key.id)


@router.post(
    "/{patient_id}/scenarios/jobs",
    response_model=JobOut,
    status_code=status.HTTP_202_ACCEPTED,
    summary="Simulate plans as a background job (up to `max_job_cost`): progress at GET /v1/jobs/{id}, "
            "the scenario run in its `result`.",
    dependencies=[Depends(audited("twin.scenarios")), Depends(require_scope("sim:run"))],
    responses={**problems(404), **_QUEUE_FULL},
)
async def post_scenarios_job(patient_id: ExistingPatient, body: ScenarioRequest, key: CurrentKey,
                             services: ServicesDep, jobs: JobsDep, request: Request) -> JobOut:
    limit = services.settings.max_job_cost
    n_days = len(report_days(body.horizon_days, body.days))
    await run_in_threadpool(_checked, services, lambda m: scenario_cost(
        m, plans=len(body.plans), samples=body.n_samples, horizon_days=body.horizon_days, summary_days=n_days + 1),
        body.model)

    fhir = _wants_fhir(request)

    def run(progress: ProgressFn, token: CancelToken) -> dict[str, Any]:
        if fhir:  # the job's result is the Bundle
            return scenario_bundle(_run_scenarios(services, patient_id, body, max_cost=limit, hint=_JOB_HINT,
                                                  on_progress=progress, cancel=token),
                                   model_stamp(services.registry, body.model))
        out = _scenarios(services, patient_id, body, max_cost=limit, hint=_JOB_HINT, on_progress=progress,
                         cancel=token)
        return out.model_dump(mode="json")

    params = {"patient_id": patient_id, "n_plans": len(body.plans),
              **body.model_dump(mode="json", exclude={"plans", "thresholds", "objective"})}
    return submit_job(jobs, "scenarios", params, run, owner=key.id)
