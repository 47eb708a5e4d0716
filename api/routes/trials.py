"""``POST /v1/trials``: a virtual trial of twins as a background job.

The cohort predicate is evaluated and the trial's cost checked while the request is answered
(422 over ``max_job_cost``, naming the cost and the cohort size); the simulation then runs as a
job with progress per shard and cancellation (``GET``/``DELETE /v1/jobs/{id}``). The shards run
in the server's job worker, or on the Ray cluster of the ``ray_address`` setting.
"""

from __future__ import annotations

import base64
import tempfile
from pathlib import Path

from fastapi import APIRouter, Depends, status

from api.deps import AuditDep, CurrentKey, JobsDep, ServicesDep, require_scope
from api.errors import ProblemError
from api.jobs import ProgressFn, submit_job
from api.openapi import problems
from api.schemas import CostOut, JobOut, TrialRequest
from service import CancelToken, OverBudget, plan_trial, run_planned_trial

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["trials"])


@router.post(
    "/trials",
    response_model=JobOut,
    status_code=status.HTTP_202_ACCEPTED,
    summary="Run a virtual trial: every patient matching a cohort predicate under each plan; per-arm outcome "
            "distributions, the average effect of each plan vs the first with its interval, the share of patients "
            "who benefit with probability >= 0.9, guardrail counts. A background job (GET /v1/jobs/{id}).",
    dependencies=[Depends(require_scope("sim:run"))],
    responses={**problems(404, 422), 429: {"description": "The API key's request limit is reached, or the job "
                                                          "queue is full; see Retry-After."}},
)
def post_trial(body: TrialRequest, key: CurrentKey, services: ServicesDep, jobs: JobsDep, audit: AuditDep) -> JobOut:
    settings = services.settings
    try:
        planned = plan_trial(settings.store, services.registry, body.cohort_dict(), body.plans, model=body.model,
                             days=body.days, samples=body.n_samples, seed=body.seed, as_of=body.as_of,
                             better=body.better, max_cost=settings.max_job_cost,
                             budget_hint="this is the ceiling of background jobs (setting max_job_cost)")
    except OverBudget as exc:
        raise ProblemError(422, str(exc), kind="over-budget",
                           cost=CostOut(**exc.cost.to_dict(), ceiling=exc.ceiling)) from None
    audit.record("trial.run", planned.ids)

    def run(progress: ProgressFn, token: CancelToken) -> dict[str, object]:
        with tempfile.TemporaryDirectory(prefix="twin-trial-") as tmp:
            png = Path(tmp) / "trial.png" if body.plot else None
            trial = run_planned_trial(planned, ray=settings.ray_address, plot=png, on_progress=progress, cancel=token)
            out: dict[str, object] = trial.to_dict(per_patient=body.per_patient)
            if png is not None:
                out["plot_png"] = base64.b64encode(png.read_bytes()).decode("ascii")
        return out

    params = {"model": body.model, "patients": len(planned.ids), "plans": [p.name for p in body.plans],
              "cost": planned.cost.units}
    return submit_job(jobs, "trial", params, run, owner=key.id)
