"""The cost of a forecast or scenario request, and the ceiling that keeps requests short.

One cost model for every entry point, in **trajectory-steps**::

    cost = (trajectories + solves x solve overhead) x solver steps + point weight x trajectories x output points

* ``trajectories``: ODE trajectories solved. A forecast rolls every ensemble member out for
  every sample (``members x samples``); a scenario run shares its samples across members and
  plans (``plans x samples``, patients = 1 on the API).
* ``solver steps``: ``ceil(horizon / the model's solver step)`` (7 days by default), the same
  for every trajectory of a solve.
* ``solves``: one batched solve per ensemble member (that has samples); each solver step of a
  solve has a fixed cost (Python and torch dispatch) worth :data:`SOLVE_OVERHEAD_TRAJECTORIES`
  trajectories, which dominates small requests with long horizons on many-member models.
* ``output points``: days reported per trajectory. A forecast reports every ``step_days``
  and summarises each point by mixture quantiles (3 quantiles x 50 bisection steps over all
  labs), which costs :data:`FORECAST_POINT_WEIGHT` solver steps per point; a scenario reports
  every solver step plus its key days, each about as cheap as a solver step
  (:data:`SCENARIO_POINT_WEIGHT`).

:data:`DEFAULT_MAX_REQUEST_COST` is measured (``bench/request_limits.py``) so that the largest
request it admits finishes in a few seconds on one torch thread of the 2-core reference
machine: 1.5-3.3 s over HTTP for every request shape at the ceiling with the default 3-member
ensemble, at most 4.0 s with a 10-member one (the largest ``POST /v1/models`` trains). Larger
work goes to a background job, up to :data:`DEFAULT_MAX_JOB_COST`. The model is deliberately
simple: it is linear in each factor the client controls, so a refusal can say which to reduce.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

from core import TwinError

if TYPE_CHECKING:
    from twin import TwinEnsemble

__all__ = [
    "DEFAULT_MAX_JOB_COST",
    "DEFAULT_MAX_REQUEST_COST",
    "EXPLAIN_STEPS",
    "FORECAST_POINT_WEIGHT",
    "OverBudget",
    "RequestCost",
    "SCENARIO_POINT_WEIGHT",
    "SOLVE_OVERHEAD_TRAJECTORIES",
    "check_cost",
    "forecast_cost",
    "request_cost",
    "scenario_cost",
]

#: Solver steps one forecast output point costs (its mixture quantiles), measured.
FORECAST_POINT_WEIGHT = 8
#: Solver steps one scenario output point costs (interpolation, decoding, sample summaries).
SCENARIO_POINT_WEIGHT = 1
#: The fixed cost of one solver step of one batched solve, in trajectories (measured).
SOLVE_OVERHEAD_TRAJECTORIES = 128
#: Largest cost a synchronous request may have (setting ``max_request_cost``); see the module docstring.
DEFAULT_MAX_REQUEST_COST = 1_000_000
#: Largest cost a background job may have (setting ``max_job_cost``): bounds a job's memory and time.
#: 20x the request ceiling admits the largest scenario run the API's schema allows (32 plans x 512
#: samples x 3650 days, 17.5 M: ~31 s and ~1.2 GB above the server's own ~0.9 GB on 2 cores).
DEFAULT_MAX_JOB_COST = 20 * DEFAULT_MAX_REQUEST_COST
#: Integrated-gradient steps of a forecast's attribution (``explain``), per ensemble member.
EXPLAIN_STEPS = 24
#: One attribution step = a forward and a backward solve, counted as this many forward solves
#: (an estimate of the backward pass's cost, not measured by ``bench/request_limits.py``).
EXPLAIN_SOLVE_FACTOR = 3
#: Key days a scenario always reports besides its grid (30/90/180/365) and the horizon.
_SCENARIO_KEY_DAYS = 5

Kind = Literal["forecast", "scenarios"]


@dataclass(frozen=True)
class RequestCost:
    """What one request asks of the solver (see the module docstring for the model)."""

    kind: Kind
    trajectories: int
    solver_steps: int
    output_points: int
    point_weight: int
    solves: int = 1

    @property
    def units(self) -> int:
        """The cost in trajectory-steps."""
        return ((self.trajectories + self.solves * SOLVE_OVERHEAD_TRAJECTORIES) * self.solver_steps
                + self.point_weight * self.trajectories * self.output_points)

    def explain(self) -> str:
        return (f"{self.units:,} trajectory-steps = ({self.trajectories:,} trajectories + {self.solves} solves x "
                f"{SOLVE_OVERHEAD_TRAJECTORIES}) x {self.solver_steps:,} solver steps + {self.point_weight} x "
                f"{self.trajectories:,} trajectories x {self.output_points:,} output points")

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "units": self.units, "trajectories": self.trajectories, "solves": self.solves,
                "solver_steps": self.solver_steps, "output_points": self.output_points,
                "point_weight": self.point_weight}


class OverBudget(TwinError):
    """A request costs more than the ceiling it is run under (names the cost, the ceiling and a way out)."""

    def __init__(self, cost: RequestCost, ceiling: int, hint: str = "") -> None:
        self.cost = cost
        self.ceiling = ceiling
        reduce = ("fewer n_samples or a shorter horizon_days or a larger step_days" if cost.kind == "forecast"
                  else "fewer plans or n_samples or a shorter horizon_days")
        msg = (f"this {cost.kind} request costs {cost.explain()}, over the ceiling of {ceiling:,}; "
               f"ask for {reduce}")
        super().__init__(f"{msg}{'; ' + hint if hint else ''}")


def request_cost(kind: Kind, *, plans: int, samples: int, members: int, horizon_days: float, step_days: float,
                 solver_step_days: float, extra_points: int = 0) -> RequestCost:
    """The cost of a forecast (``plans=1``) or scenario run on one patient.

    ``step_days`` is the spacing of the reported points (a scenario reports at the solver step);
    ``extra_points`` counts reported days off that grid (a scenario's summary days).
    """
    if min(plans, samples, members) < 1 or not (horizon_days > 0 and step_days > 0 and solver_step_days > 0):
        raise TwinError("request cost needs plans, samples and members >= 1 and positive horizon and steps")
    steps = max(1, math.ceil(horizon_days / solver_step_days))
    points = math.floor(horizon_days / step_days + 1e-9) + 2 + extra_points  # grid, the horizon, day 0
    if kind == "forecast":
        return RequestCost(kind, plans * samples * members, steps, points, FORECAST_POINT_WEIGHT, members)
    return RequestCost(kind, plans * samples, steps, points, SCENARIO_POINT_WEIGHT, min(members, samples))


def _solver_step(model: TwinEnsemble) -> float:
    return float(model.cohort.scales.step_days)


def forecast_cost(model: TwinEnsemble, *, samples: int, horizon_days: float, step_days: float,
                  explain: bool = False) -> RequestCost:
    """Cost of :meth:`twin.Twin.forecast` with ``model`` (every member draws ``samples``), plus
    with ``explain`` its attribution (:meth:`twin.Twin.explain`): :data:`EXPLAIN_STEPS` solves of
    one trajectory per member, each counted :data:`EXPLAIN_SOLVE_FACTOR` times for its backward
    pass, over the forecast's solver steps (an upper bound: attribution stops at day 180)."""
    members = len(model.members)
    cost = request_cost("forecast", plans=1, samples=max(samples, 1), members=members,
                        horizon_days=horizon_days, step_days=max(step_days, 1), solver_step_days=_solver_step(model))
    if not explain:
        return cost
    extra = members * EXPLAIN_STEPS * EXPLAIN_SOLVE_FACTOR
    return replace(cost, trajectories=cost.trajectories + extra, solves=cost.solves + extra)


def scenario_cost(model: TwinEnsemble, *, plans: int, samples: int, horizon_days: float,
                  summary_days: int = 0) -> RequestCost:
    """Cost of :func:`scenarios.simulate` of ``plans`` on one twin (samples shared across members)."""
    step = _solver_step(model)
    return request_cost("scenarios", plans=plans, samples=samples, members=len(model.members),
                        horizon_days=horizon_days, step_days=step, solver_step_days=step,
                        extra_points=_SCENARIO_KEY_DAYS + summary_days)


def check_cost(cost: RequestCost, ceiling: int | None, hint: str = "") -> RequestCost:
    """``cost`` if it is within ``ceiling`` (``None``: no ceiling); :class:`OverBudget` otherwise."""
    if ceiling is not None and cost.units > ceiling:
        raise OverBudget(cost, ceiling, hint)
    return cost
