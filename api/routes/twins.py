"""``POST /v1/twins/{id}/forecast`` and ``POST /v1/twins/{id}/scenarios`` (what-if plans).

The patient's graph as of the origin is bound to a trained model (:class:`twin.twin.Twin`);
forecasts come from :meth:`Twin.forecast`, scenarios from :func:`scenarios.simulate` (all
plans in one batched solve) and :func:`scenarios.rank`.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends
from starlette.concurrency import run_in_threadpool

from api.deps import ExistingPatient, ServicesDep, audited, require_scope
from api.errors import ProblemError
from api.models import ModelCache, ModelFile, find_model
from api.openapi import problems
from api.schemas import ForecastOut, ForecastRequest, LabForecastOut, ScenarioOut, ScenarioRequest
from api.deps import Services

__all__ = ["router"]

router = APIRouter(prefix="/v1/twins", tags=["twins"])


def _model(services: Services, name: str) -> tuple[ModelFile, object]:
    found = find_model(services.settings.model_path, name)
    if found is None:
        raise ProblemError(404, f"no trained model named {name!r}; train one with POST /v1/models",
                           kind="unknown-model")
    cache = services.cache.setdefault("models", ModelCache(services.settings.device))
    return found, cache.get(found)


def _forecast(services: Services, patient_id: str, body: ForecastRequest) -> ForecastOut:
    from twin.twin import Twin

    _, ens = _model(services, body.model)
    tw = Twin.load(services.store, patient_id, ens, as_of=body.as_of)
    fc = tw.forecast(horizon_days=body.horizon_days, n_samples=body.n_samples, step_days=body.step_days,
                     seed=body.seed)
    return ForecastOut(
        patient_id=patient_id, model=body.model, origin=fc.origin, horizon_days=fc.horizon_days,
        n_samples=fc.n_samples, n_members=fc.n_members, event_risk=fc.event_risk,
        labs={c: LabForecastOut(**lf.__dict__) for c, lf in fc.labs.items()},
    )


def _scenarios(services: Services, patient_id: str, body: ScenarioRequest) -> ScenarioOut:
    from scenarios import Objective, Threshold, rank, simulate
    from twin.twin import Twin

    objective = Objective.parse(body.objective) if body.objective else None
    thresholds = [Threshold(t.lab, t.op, t.value) for t in body.thresholds]
    days = tuple(sorted(set(body.days))) if body.days else (
        tuple(d for d in (90.0, 180.0, 365.0) if d <= body.horizon_days) or (body.horizon_days,))
    if objective is not None and objective.day <= body.horizon_days and objective.day not in days:
        days = (*days, objective.day)
    _, ens = _model(services, body.model)
    tw = Twin.load(services.store, patient_id, ens, as_of=body.as_of)
    result = simulate(tw, body.plans, body.horizon_days, n_samples=body.n_samples, seed=body.seed, strict=body.strict,
                      reference=body.reference, thresholds=thresholds, extra_days=days)
    ranking = rank(result, objective) if objective is not None else None
    doc = result.to_dict(days=days)
    return ScenarioOut(
        patient_id=patient_id, model=body.model, origin=tw.as_of, plans=doc["plans"], reference=doc["reference"],
        horizon_days=doc["horizon_days"], n_samples=doc["n_samples"], seed=doc["seed"], quantiles=doc["quantiles"],
        labs=doc["labs"], events=doc["events"], flags=doc["flags"], results=doc["patients"][0]["plans"],
        ranking=ranking.to_dict() if ranking is not None else None,
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
