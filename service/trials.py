"""The virtual trial, one call: a cohort predicate joined with a what-if of several plans, for
``twin trial`` and ``POST /v1/trials`` (see :mod:`scenarios.trial` for the engine).

The cohort is selected first, so the trial's cost (:func:`trial_cost`, trajectory-steps as for
scenario runs, times the cohort's size) is checked against the caller's ceiling before any
twin is built.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core import ConfigError, PlanError, QueryError, parse_duration
from service.cancel import CancelToken, ProgressFn, checkpoint
from service.limits import RequestCost, check_cost, request_cost
from service.registry import DEFAULT_MODEL, ModelRegistry

if TYPE_CHECKING:
    from scenarios import TreatmentPlan, TrialResult, TrialSpec

__all__ = ["TRIAL_DAYS", "PlannedTrial", "TrialRun", "plan_trial", "run_cohort_trial", "run_planned_trial",
           "trial_cost"]

#: Days a trial summarises unless told otherwise.
TRIAL_DAYS: tuple[float, ...] = (90.0, 180.0)


def trial_cost(*, patients: int, plans: int, samples: int, members: int, horizon_days: float,
               solver_step_days: float, shards: int) -> RequestCost:
    """The cost of a trial: a scenario run of ``plans`` x ``samples`` on each of ``patients``,
    solved in ``shards`` batched solves (one per ensemble member each)."""
    one = request_cost("scenarios", plans=plans, samples=samples * max(patients, 1), members=members,
                       horizon_days=horizon_days, step_days=solver_step_days, solver_step_days=solver_step_days)
    return RequestCost("scenarios", one.trajectories, one.solver_steps, one.output_points, one.point_weight,
                       solves=max(shards, 1) * min(members, samples))


@dataclass
class TrialRun:
    """A finished trial, what it cost and its plot."""

    result: TrialResult
    cost: RequestCost
    plot: Path | None = None

    def to_dict(self, *, per_patient: bool = False) -> dict[str, Any]:
        out = {**self.result.summary(), "cost": self.cost.to_dict()}
        if per_patient:
            out["patients"] = self.result.per_patient()
        return out


def _predicate(predicate: str | dict[str, Any]) -> dict[str, Any]:
    from graph import predicate_from_json

    if isinstance(predicate, str):
        predicate_from_json(predicate)  # precise errors (limits, JSON) before json.loads
        doc = json.loads(predicate)
    else:
        doc = predicate
    if not isinstance(doc, dict):
        raise QueryError("a cohort predicate is a JSON object, e.g. {\"has_condition\": \"44054006\"}")
    return doc


def _portable_url(url: str) -> str:
    """The store URL as a worker elsewhere must read it: SQLite paths made absolute; an
    in-memory store refused (workers open the store themselves)."""
    if url.startswith("memory:"):
        raise ConfigError("a trial's workers open the store themselves: it needs a persistent store "
                          "(sqlite:///path.db or bolt://host:port), not memory://")
    if "://" not in url or url.startswith("sqlite:///"):
        return f"sqlite:///{Path(url.removeprefix('sqlite:///')).resolve()}"
    return url


@dataclass
class PlannedTrial:
    """A trial whose cohort is selected and whose cost is within its ceiling: ready to run."""

    spec: TrialSpec
    ids: list[str]
    cost: RequestCost


def plan_trial(store_url: str, registry: ModelRegistry, predicate: str | dict[str, Any],
               plans: Sequence[TreatmentPlan], *, model: str = DEFAULT_MODEL,
               days: Sequence[float | str] | None = None, samples: int = 64, seed: int = 0,
               as_of: datetime | None = None, better: Mapping[str, str] | None = None,
               shard_size: int | None = None, max_cost: int | None = None, budget_hint: str = "") -> PlannedTrial:
    """Check the trial's inputs, select its cohort and check its cost (:class:`~service.limits.OverBudget`
    above ``max_cost``), before any twin is built."""
    from scenarios import DEFAULT_SHARD_SIZE, TrialSpec, select_cohort

    if len(plans) < 2:
        raise PlanError(f"a trial compares at least 2 plans (the first is the reference), got {len(plans)}")
    day_list = tuple(parse_duration(d, what="trial day") for d in (days or TRIAL_DAYS))
    if samples < 2:
        raise ConfigError(f"a trial needs at least 2 samples per patient, got {samples}")
    info = registry.get(model)
    ens = registry.load_info(info)
    spec = TrialSpec(_portable_url(store_url), str(info.path.resolve()), _predicate(predicate),
                     tuple(p.to_dict() for p in plans), days=day_list, samples=samples, seed=seed,
                     as_of=as_of.isoformat() if as_of else None, shard_size=shard_size or DEFAULT_SHARD_SIZE,
                     better=dict(better or {}))  # type: ignore[arg-type]
    ids = select_cohort(spec)
    if not ids:
        raise QueryError("no patient matches the trial's cohort predicate")
    cost = check_cost(trial_cost(patients=len(ids), plans=len(plans), samples=samples, members=len(ens.members),
                                 horizon_days=spec.horizon_days, solver_step_days=float(ens.cohort.scales.step_days),
                                 shards=math.ceil(len(ids) / spec.shard_size)),
                      max_cost, "or a narrower cohort" + (f"; {budget_hint}" if budget_hint else ""))
    return PlannedTrial(spec, ids, cost)


def run_planned_trial(planned: PlannedTrial, *, ray: str | None = None, workers: int = 2, plot: Path | None = None,
                      on_progress: ProgressFn | None = None, cancel: CancelToken | None = None) -> TrialRun:
    """Run a planned trial: in this process (``ray=None``), on a local Ray cluster of
    ``workers`` CPUs (``"local"``) or on the Ray cluster at address ``ray``. ``cancel`` and
    ``on_progress`` stop it between shards."""
    from scenarios import run_trial

    report = checkpoint(on_progress, cancel)
    result = run_trial(planned.spec, ray=ray, workers=workers, ids=planned.ids,
                       on_progress=lambda f, m: report(0.98 * f, m))
    png = result.plot(plot) if plot else None
    return TrialRun(result, planned.cost, png)


def run_cohort_trial(store_url: str, registry: ModelRegistry, predicate: str | dict[str, Any],
                     plans: Sequence[TreatmentPlan], *, ray: str | None = None, workers: int = 2,
                     plot: Path | None = None, on_progress: ProgressFn | None = None,
                     cancel: CancelToken | None = None, **options: Any) -> TrialRun:
    """:func:`plan_trial` (``options``: its keyword arguments) then :func:`run_planned_trial`."""
    return run_planned_trial(plan_trial(store_url, registry, predicate, plans, **options), ray=ray, workers=workers,
                             plot=plot, on_progress=on_progress, cancel=cancel)
