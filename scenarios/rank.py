"""Ranking plans by an objective the user states, with how sure the ranking is.

An :class:`Objective` is a target (a lab on a day, or the risk of an event by a day) to minimise
or maximise, optionally subject to constraints that must hold over the whole trajectory up to
that day, e.g. ``minimise HbA1c at 180d subject to eGFR > 45`` or
``minimise risk:hospitalisation at 365d``.

Per sample of the twin (samples are paired across plans, see :mod:`scenarios.result`), a plan
scores its target value if all constraints hold and is infeasible otherwise. Plans that meet
the constraints with probability ≥ ``feasibility`` rank first, by median score; the rest follow
by probability of meeting them. ``p_best`` of a plan is the share of samples in which it is the
best feasible plan, so ``p_best`` of the top plan is the probability that it is truly best
under the twin's own uncertainty.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

from core.durations import DURATION_PATTERN, days_of
from core.errors import PlanError
from scenarios.result import ScenarioResult, Threshold

__all__ = ["Objective", "RankedPlan", "Ranking", "rank"]

_OBJ = re.compile(rf"^\s*(min(?:imi[sz]e)?|max(?:imi[sz]e)?)\s+(.+?)\s+(?:at|by)\s+{DURATION_PATTERN}\s*(?:(?:subject\s+to|s\.t\.|where|with)\s+(.+))?$", re.I)


@dataclass(frozen=True)
class Objective:
    """Target (``lab`` code/name/alias or ``risk:<event>``) on ``day``, ``sense``, constraints."""

    target: str
    day: float
    sense: Literal["min", "max"] = "min"
    constraints: tuple[Threshold, ...] = ()
    feasibility: float = 0.9

    def __post_init__(self) -> None:
        if self.sense not in ("min", "max"):
            raise PlanError(f"objective sense must be 'min' or 'max', got {self.sense!r}")
        if not (math.isfinite(self.day) and self.day >= 0):
            raise PlanError(f"objective day must be >= 0, got {self.day}")
        if not 0.0 < self.feasibility <= 1.0:
            raise PlanError(f"feasibility must be in (0, 1], got {self.feasibility}")

    @property
    def is_risk(self) -> bool:
        return self.target.lower().startswith("risk:")

    @classmethod
    def parse(cls, text: str, *, feasibility: float = 0.9) -> Objective:
        """Parse ``"minimise HbA1c at 180d subject to eGFR > 45 and K < 5.5"`` (or ``min risk:hospitalisation at 1y``)."""
        m = _OBJ.match(text)
        if not m:
            raise PlanError(f"cannot read objective {text!r}; write e.g. 'minimise HbA1c at 180d subject to eGFR > 45' "
                            "or 'minimise risk:hospitalisation at 365d'")
        sense: Literal["min", "max"] = "min" if m.group(1).lower().startswith("min") else "max"
        cons: list[Threshold] = []
        if m.group(5):
            for part in re.split(r"\s+and\s+|\s*,\s*", m.group(5).strip()):
                try:
                    cons.append(Threshold.parse(part))
                except PlanError:
                    raise PlanError(f"cannot read constraint {part!r} in objective {text!r}; write e.g. 'eGFR > 45'") from None
        return cls(m.group(2).strip(), days_of(m.group(3), m.group(4)), sense, tuple(cons), feasibility)

    def __str__(self) -> str:
        s = f"{'minimise' if self.sense == 'min' else 'maximise'} {self.target} at {self.day:g}d"
        return s + (f" subject to {' and '.join(map(str, self.constraints))}" if self.constraints else "")


@dataclass(frozen=True)
class RankedPlan:
    """One plan's place in a ranking.

    ``median``/``lo``/``hi``: the objective's target (lab value, or risk as a probability) on the
    objective's day under this plan; ``diff_*``: this plan minus the ``reference`` plan, computed
    sample by sample (paired, see :mod:`scenarios.result`), so its interval holds only the
    uncertainty about the difference; the reference's own difference is 0.
    """

    plan: str
    rank: int
    median: float
    lo: float
    hi: float
    p_feasible: float
    p_best: float
    reference: str = ""
    diff_median: float = 0.0
    diff_lo: float = 0.0
    diff_hi: float = 0.0


@dataclass
class Ranking:
    """Plans of one patient ordered best first under an objective."""

    patient: str
    objective: str
    entries: list[RankedPlan] = field(default_factory=list)
    #: What the objective scores: the lab's code (an alias or name resolved) or ``risk:<event>``.
    target: str | None = None

    @property
    def top(self) -> RankedPlan:
        return self.entries[0]

    @property
    def p_top_is_best(self) -> float:
        """Probability (over the twin's samples) that the top-ranked plan is truly the best."""
        return self.entries[0].p_best

    def order(self) -> list[str]:
        return [e.plan for e in self.entries]

    def to_dict(self) -> dict[str, Any]:
        return {"patient": self.patient, "objective": self.objective, "target": self.target,
                "p_top_is_best": self.p_top_is_best, "plans": [asdict(e) for e in self.entries]}


def objective_samples(result: ScenarioResult, objective: Objective, patient: str | int | None) -> tuple[np.ndarray, np.ndarray]:
    """``(score, feasible)``, each ``[S, P]``: target samples (lower is better) and constraint checks."""
    pi = result.patient_index(patient)
    if objective.is_risk:
        score = result.risk_at(objective.target, objective.day, pi)
    else:
        score = result.lab_at(objective.target, objective.day, pi)
    score = score if objective.sense == "min" else -score
    feasible = np.ones(score.shape, dtype=bool)
    upto = result.time_index(objective.day)
    if objective.constraints:
        result.full_samples("a constraint over the trajectory")
    for c in objective.constraints:
        traj = result.lab_samples[:, pi, :, : upto + 1, result.lab_index(c.lab)]
        feasible &= c.holds(traj).all(axis=-1)
    return score.astype(np.float64), feasible


def rank(result: ScenarioResult, objective: Objective | str, patient: str | int | None = None) -> Ranking:
    """Rank the plans of ``patient`` (the only one when ``None``) in ``result`` by ``objective``."""
    obj = Objective.parse(objective) if isinstance(objective, str) else objective
    pi = result.patient_index(patient)
    score, feasible = objective_samples(result, obj, pi)
    S, P = score.shape
    penal = np.where(feasible, score, np.inf)
    any_ok = np.isfinite(penal).any(axis=1)
    winner = np.argmin(penal, axis=1)
    p_best = np.array([float(np.mean((winner == p) & any_ok)) for p in range(P)])
    p_feas = feasible.mean(axis=0)
    med, lo, hi = result.summarise(score)
    sign = 1.0 if obj.sense == "min" else -1.0
    ref = result.plan_index(result.reference)
    d_med, d_lo, d_hi = result.summarise(sign * (score - score[:, ref : ref + 1]))  # paired, in the target's units
    ok = p_feas >= obj.feasibility - 1e-12
    order = sorted(range(P), key=lambda p: (0, med[p], -p_best[p]) if ok[p] else (1, -p_feas[p], med[p]))
    entries = []
    for r, p in enumerate(order, start=1):
        a, b = sorted((sign * lo[p], sign * hi[p]))
        entries.append(RankedPlan(result.plans[p], r, float(sign * med[p]), float(a), float(b),
                                  float(p_feas[p]), float(p_best[p]), result.reference, float(d_med[p]),
                                  float(d_lo[p]), float(d_hi[p])))
    target = obj.target if obj.is_risk else result.labs[result.lab_index(obj.target)]
    return Ranking(result.patients[pi], str(obj), entries, target)
