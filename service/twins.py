"""Forecasts and what-if scenarios for one patient: the one implementation behind
``twin forecast``/``twin simulate`` and ``POST /v1/twins/{id}/forecast|scenarios``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from core import TwinError, parse_duration
from graph import GraphStore, NodeQuery
from service.cancel import CancelToken, ProgressFn, checkpoint
from service.limits import EXPLAIN_STEPS, RequestCost, check_cost, forecast_cost, scenario_cost
from service.registry import DEFAULT_MODEL, ModelRegistry

if TYPE_CHECKING:
    from scenarios import Objective, Ranking, ScenarioResult, Threshold, TreatmentPlan
    from twin import Attribution, Forecast, Twin

__all__ = ["REPORT_DAYS", "ForecastRun", "ScenarioRun", "forecast_patient", "load_twin", "report_days",
           "simulate_patient"]

#: Days at which forecasts and scenarios are summarised unless the caller names others.
REPORT_DAYS: tuple[float, ...] = (90.0, 180.0, 365.0)


def report_days(horizon_days: float, requested: Sequence[float] | None = None,
                objective: Objective | None = None) -> tuple[float, ...]:
    """The summary days within the horizon: ``requested`` (default :data:`REPORT_DAYS`, else
    the horizon itself) plus the objective's day."""
    days = tuple(sorted(set(requested))) if requested else (
        tuple(d for d in REPORT_DAYS if d <= horizon_days) or (horizon_days,))
    if objective is not None and objective.day <= horizon_days and objective.day not in days:
        days = (*days, objective.day)
    return days


def load_twin(store: GraphStore, registry: ModelRegistry, patient_id: str, model: str = DEFAULT_MODEL,
              as_of: datetime | None = None) -> Twin:
    """Patient ``patient_id``'s graph as of ``as_of`` bound to registry model ``model``."""
    from twin import Twin

    ens = registry.load(model)
    try:
        return Twin.load(store, patient_id, ens, as_of=as_of)  # one read of the records
    except TwinError:
        if not store.find_nodes(NodeQuery(patient_id=patient_id, limit=1)):  # only on failure: say why
            raise TwinError(f"no patient with id {patient_id!r} in the store") from None
        raise


@dataclass
class ForecastRun:
    """A forecast, the twin it came from, its cost and (when asked) the records that drove it."""

    twin: Twin
    forecast: Forecast
    attributions: list[Attribution] = field(default_factory=list)
    plot: Path | None = None
    cost: RequestCost | None = None
    seed: int = 0


def forecast_patient(store: GraphStore, registry: ModelRegistry, patient_id: str, *, model: str = DEFAULT_MODEL,
                     horizon: str | float = 365, as_of: datetime | None = None, samples: int = 32,
                     step_days: int = 7, seed: int = 0, explain: bool = False, explain_lab: str | None = None,
                     plot: Path | None = None, max_cost: int | None = None, budget_hint: str = "",
                     on_progress: ProgressFn | None = None, cancel: CancelToken | None = None) -> ForecastRun:
    """Forecast a patient's target labs and event risks under their current treatment.

    ``max_cost`` refuses (:class:`~service.limits.OverBudget`, before the solve) a forecast whose
    :func:`~service.limits.forecast_cost` is above it; ``budget_hint`` is added to that message.
    ``cancel`` stops the work at its next checkpoint (:class:`~service.cancel.Cancelled`);
    ``on_progress`` hears of each checkpoint and may raise to stop there too. ``explain`` adds
    the records that drove the forecast of ``explain_lab`` (default: the first target) at day
    180 or the horizon, whichever is sooner (counted in the cost).
    """
    report = checkpoint(on_progress, cancel)
    days = parse_duration(horizon, what="horizon")
    report(0.0, "loading the patient's records")
    tw = load_twin(store, registry, patient_id, model, as_of)
    cost = check_cost(forecast_cost(tw.model, samples=samples, horizon_days=days, step_days=step_days,
                                    explain=explain), max_cost, budget_hint)
    fc = tw.forecast(horizon_days=days, n_samples=samples, step_days=step_days, seed=seed,
                     on_progress=lambda f, m: report(0.05 + 0.9 * f, m))
    report(0.95, "summarising")
    attributions = (tw.explain(lab=explain_lab, horizon_days=int(min(days, 180)), steps=EXPLAIN_STEPS)
                    if explain else [])
    png = tw.plot(plot, fc) if plot else None
    return ForecastRun(tw, fc, attributions, png, cost, seed)


@dataclass
class ScenarioRun:
    """Plans simulated on one twin, their summary days and (with an objective) their ranking."""

    twin: Twin
    result: ScenarioResult
    days: tuple[float, ...]
    ranking: Ranking | None = None
    plot: Path | None = None
    cost: RequestCost | None = None
    plans: tuple[TreatmentPlan, ...] = ()

    def to_dict(self) -> dict[str, object]:
        return {**self.result.to_dict(days=self.days), "ranking": self.ranking.to_dict() if self.ranking else None}


def simulate_patient(store: GraphStore, registry: ModelRegistry, patient_id: str, plans: Sequence[TreatmentPlan], *,
                     model: str = DEFAULT_MODEL, horizon: str | float = 365, as_of: datetime | None = None,
                     objective: str | None = None, reference: str | None = None,
                     thresholds: Sequence[str | Threshold] = (), days: Sequence[float] | None = None,
                     samples: int = 64, seed: int = 0, strict: bool = False,
                     plot: Path | None = None, max_cost: int | None = None, budget_hint: str = "",
                     on_progress: ProgressFn | None = None, cancel: CancelToken | None = None) -> ScenarioRun:
    """Simulate ``plans`` on the patient's twin in one batched solve; rank them by ``objective``.

    ``max_cost``, ``budget_hint``, ``on_progress`` and ``cancel`` as in :func:`forecast_patient`
    (the cost is :func:`~service.limits.scenario_cost`; checkpoints fall between solver chunks).
    """
    from scenarios import Objective, Threshold, plot_trajectories, rank, simulate

    report = checkpoint(on_progress, cancel)
    horizon_days = parse_duration(horizon, what="horizon")
    obj = Objective.parse(objective) if objective else None
    ths = [t if isinstance(t, Threshold) else Threshold.parse(t) for t in thresholds]
    key_days = report_days(horizon_days, days, obj)
    report(0.0, "loading the patient's records")
    tw = load_twin(store, registry, patient_id, model, as_of)
    cost = check_cost(scenario_cost(tw.model, plans=len(plans), samples=samples, horizon_days=horizon_days,
                                    summary_days=len(key_days)), max_cost, budget_hint)
    result = simulate(tw, list(plans), horizon_days, n_samples=samples, seed=seed, strict=strict, reference=reference,
                      thresholds=ths, extra_days=key_days, on_progress=lambda f, m: report(0.05 + 0.85 * f, m))
    report(0.9, "ranking plans" if obj is not None else "summarising")
    ranking = rank(result, obj) if obj is not None else None
    png = plot_trajectories(result, plot) if plot else None
    return ScenarioRun(tw, result, key_days, ranking, png, cost, tuple(plans))
