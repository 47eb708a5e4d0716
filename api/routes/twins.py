"""``POST /v1/twins/{id}/forecast`` and ``POST /v1/twins/{id}/scenarios`` (what-if plans).

Both call the application layer (:func:`service.forecast_patient`, :func:`service.simulate_patient`),
the same functions ``twin forecast`` and ``twin simulate`` call.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends
from starlette.concurrency import run_in_threadpool

from api.deps import ExistingPatient, Services, ServicesDep, audited, require_scope
from api.openapi import problems
from api.schemas import ForecastOut, ForecastRequest, LabForecastOut, ScenarioOut, ScenarioRequest
from scenarios import Threshold
from service import forecast_patient, simulate_patient

__all__ = ["router"]

router = APIRouter(prefix="/v1/twins", tags=["twins"])


def _forecast(services: Services, patient_id: str, body: ForecastRequest) -> ForecastOut:
    fc = forecast_patient(services.store, services.registry, patient_id, model=body.model, horizon=body.horizon_days,
                          as_of=body.as_of, samples=body.n_samples, step_days=body.step_days, seed=body.seed).forecast
    return ForecastOut(
        patient_id=patient_id, model=body.model, origin=fc.origin, horizon_days=fc.horizon_days,
        n_samples=fc.n_samples, n_members=fc.n_members, event_risk=fc.event_risk,
        labs={c: LabForecastOut(**lf.__dict__) for c, lf in fc.labs.items()},
    )


def _scenarios(services: Services, patient_id: str, body: ScenarioRequest) -> ScenarioOut:
    run = simulate_patient(services.store, services.registry, patient_id, body.plans, model=body.model,
                           horizon=body.horizon_days, as_of=body.as_of, objective=body.objective,
                           reference=body.reference, thresholds=[Threshold(t.lab, t.op, t.value) for t in body.thresholds],
                           days=body.days, samples=body.n_samples, seed=body.seed, strict=body.strict)
    doc = run.result.to_dict(days=run.days)
    return ScenarioOut(
        patient_id=patient_id, model=body.model, origin=run.twin.as_of, plans=doc["plans"], reference=doc["reference"],
        horizon_days=doc["horizon_days"], n_samples=doc["n_samples"], seed=doc["seed"], quantiles=doc["quantiles"],
        labs=doc["labs"], events=doc["events"], flags=doc["flags"], results=doc["patients"][0]["plans"],
        ranking=run.ranking.to_dict() if run.ranking is not None else None,
    )


@router.post(
    "/{patient_id}/forecast",
    response_model=ForecastOut,
    summary="Forecast a patient's labs (median, 5-95 %) and event risks under current therapy.",
    dependencies=[Depends(audited("twin.forecast")), Depends(require_scope("sim:run"))],
    responses=problems(404),
)
async def post_forecast(patient_id: ExistingPatient, body: ForecastRequest, services: ServicesDep) -> ForecastOut:
    return await run_in_threadpool(_forecast, services, patient_id, body)


@router.post(
    "/{patient_id}/scenarios",
    response_model=ScenarioOut,
    summary="Simulate treatment plans on the patient's twin in one batched solve, compare and rank them.",
    dependencies=[Depends(audited("twin.scenarios")), Depends(require_scope("sim:run"))],
    responses=problems(404),
)
async def post_scenarios(patient_id: ExistingPatient, body: ScenarioRequest, services: ServicesDep) -> ScenarioOut:
    return await run_in_threadpool(_scenarios, services, patient_id, body)
