"""Ranking plans by an objective the user states, with how sure the ranking is.

An :class:`Objective` is a target (a lab on a day, or the risk of an event by a day) to minimise
or maximise, optionally subject to constraints that must hold over the whole trajectory up to
that day, e.g. ``minimise HbA1c at 180d subject to eGFR > 45`` or
``minimise risk:hospitalisation at 365d``.

Per sample of the twin (samples are paired across plans, see :mod:`scenarios.result`), a plan
scores its target value if all constraints hold and is infeasible otherwise. Plans that meet
the constraints with probability ≥ ``feasibility`` rank first, by median score; the rest follow
by probability of meeting them.

How sure: the plans' *differences* are what decides which is best, and the largest
uncertainty about a difference is the model's about the treatment effect, which the ensemble
members' disagreement measures (sample ``s`` comes from member ``s mod M``). A few members
under-state it (three points are a poor picture of a spread), so :func:`outcome_draws` keeps
each sample's within-member part (its shared level, latent draw, noise: paired across plans)
and redraws the between-member part from a Gaussian with the members' sample covariance of
the plans' scores, times ``1 + 1/M`` (the truth as one more member, the members' mean itself
uncertain). ``p_best`` of a plan is the share of these draws in which it is the best feasible
plan (plans equal within a draw share it). The *advantage* of the top plan over each other
plan is the paired difference of their draws; when its 5–95 % interval contains zero the
two are reported as **tied**: the ranking does not tell them apart, whatever ``p_best`` says.
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

__all__ = ["EFFECT_DRAWS", "Objective", "RankedPlan", "Ranking", "outcome_draws", "p_best_of", "rank"]

#: Draws of the plans' joint outcome behind ``p_best`` and the advantages (see the module docstring).
EFFECT_DRAWS = 2048

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
    draw by draw (paired, see :mod:`scenarios.result`, with the members' disagreement, see the
    module docstring), so its interval holds only the uncertainty about the difference; the
    reference's own difference is 0. ``advantage_*``: how much better the top plan is than this
    one (in the objective's direction, > 0: the top is better), paired; ``tied_with_top``: its
    interval contains zero (the top plan itself is tied with itself).
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
    advantage_median: float = 0.0
    advantage_lo: float = 0.0
    advantage_hi: float = 0.0
    tied_with_top: bool = False


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
        """Probability (over the twin's uncertainty) that the top-ranked plan is truly the best."""
        return self.entries[0].p_best

    @property
    def tied(self) -> list[str]:
        """The top plan and every plan tied with it (its advantage's interval contains zero)."""
        return [e.plan for e in self.entries if e.tied_with_top]

    @property
    def p_tied_best(self) -> float:
        """Probability that the best plan is one of :attr:`tied`."""
        return float(sum(e.p_best for e in self.entries if e.tied_with_top))

    @property
    def verdict(self) -> str:
        """One line: the top plan and how sure, or the plans it is tied with."""
        if len(self.tied) == 1:
            return f"top plan {self.top.plan}: P(truly best) {self.p_top_is_best:.0%}"
        return (f"tie between {', '.join(self.tied)} (the top plan's advantage interval contains 0); "
                f"P(the best is one of them) {self.p_tied_best:.0%}")

    def order(self) -> list[str]:
        return [e.plan for e in self.entries]

    def to_dict(self) -> dict[str, Any]:
        return {"patient": self.patient, "objective": self.objective, "target": self.target,
                "p_top_is_best": self.p_top_is_best, "tied": self.tied, "p_tied_best": self.p_tied_best,
                "verdict": self.verdict, "plans": [asdict(e) for e in self.entries]}


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


def outcome_draws(score: np.ndarray, members: int, *, n_draws: int = EFFECT_DRAWS, seed: int = 0
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Draws ``[R, P]`` of the plans' scores with the members' disagreement redrawn, and the
    sample each draw's within-member part comes from (``[R]``).

    ``score`` ``[S, P]``: paired samples, sample ``s`` from member ``s mod members``. Member
    ``k``'s mean scores ``e_k`` give the between-member deviations ``D_k = e_k - mean(e)``; draw
    ``r`` is ``mean(e) + sqrt((1 + 1/M) / (M - 1)) · Σ_k g_rk D_k + (score[s] - e_k(s))`` with
    ``s = r mod S`` and ``g`` standard normal, so the between-member part has the members'
    sample covariance times ``1 + 1/M``. With fewer than 2 members (or samples than members)
    there is no disagreement to read, and the draws are the samples themselves.
    """
    s, p = score.shape
    if members < 2 or s < members:
        return score.copy(), np.arange(s)
    k_of = np.arange(s) % members
    e = np.stack([score[k_of == k].mean(axis=0) for k in range(members)])  # [M, P]
    centre = e.mean(axis=0)
    dev = e - centre
    rows = np.arange(max(n_draws, s)) % s
    g = np.random.default_rng(seed).standard_normal((len(rows), members))
    scale = math.sqrt((1.0 + 1.0 / members) / (members - 1))
    return centre + scale * (g @ dev) + (score[rows] - e[k_of[rows]]), rows


#: Relative difference below which two plans' values count as equal: the samples are float32
#: (a spacing of 6e-8 relative), and plans with the same doses can differ in the last bits when
#: they are solved in different chunks.
SAME = 1e-6


def _levels(values: np.ndarray) -> list[int]:
    """Rank of each value among ``values`` with neighbours equal to :data:`SAME` merged (ties
    by float32 noise get one level)."""
    order = np.argsort(values, kind="stable")
    level = [0] * len(values)
    g = 0
    for i, p in enumerate(order):
        prev = values[order[i - 1]] if i else None
        if prev is not None and not abs(values[p] - prev) <= SAME * max(1.0, abs(float(values[p]))):
            g += 1
        level[p] = g
    return level


def p_best_of(draws: np.ndarray, feasible: np.ndarray) -> np.ndarray:
    """Share ``[P]`` of the draws ``[R, P]`` (lower is better) in which each plan is the best
    feasible one; plans equal to the best within a draw (to :data:`SAME`: the samples are
    float32) share that draw."""
    penal = np.where(feasible, draws, np.inf)
    best = penal.min(axis=1, keepdims=True)
    ok = np.isfinite(best)
    win = ok & (penal <= best + SAME * np.maximum(1.0, np.abs(np.where(ok, best, 0.0))))
    share = win / np.maximum(win.sum(axis=1, keepdims=True), 1)
    return share.mean(axis=0)


def rank(result: ScenarioResult, objective: Objective | str, patient: str | int | None = None) -> Ranking:
    """Rank the plans of ``patient`` (the only one when ``None``) in ``result`` by ``objective``."""
    obj = Objective.parse(objective) if isinstance(objective, str) else objective
    pi = result.patient_index(patient)
    score, feasible = objective_samples(result, obj, pi)
    P = score.shape[1]
    draws, rows = outcome_draws(score, result.members, seed=result.seed)
    feas = feasible[rows]
    p_best = p_best_of(draws, feas)
    p_feas = feasible.mean(axis=0)
    med, lo, hi = result.summarise(score)
    sign = 1.0 if obj.sense == "min" else -1.0
    ref = result.plan_index(result.reference)
    d_med, d_lo, d_hi = result.summarise(sign * (draws - draws[:, ref : ref + 1]))  # paired, in the target's units
    ok = p_feas >= obj.feasibility - 1e-12
    # medians equal to float32 precision are equal: p(best), then the plans' order, decide
    level = _levels(med)
    order = sorted(range(P), key=lambda p: (0, level[p], -p_best[p]) if ok[p] else (1, -p_feas[p], med[p]))
    top = order[0]
    a_med, a_lo, a_hi = result.summarise(draws - draws[:, top : top + 1])  # > 0: the top plan is better
    entries = []
    for r, p in enumerate(order, start=1):
        a, b = sorted((sign * lo[p], sign * hi[p]))
        tied = p == top or bool(ok[p] and ok[top] and a_lo[p] <= 0.0 <= a_hi[p])
        entries.append(RankedPlan(result.plans[p], r, float(sign * med[p]), float(a), float(b),
                                  float(p_feas[p]), float(p_best[p]), result.reference, float(d_med[p]),
                                  float(d_lo[p]), float(d_hi[p]), float(a_med[p]), float(a_lo[p]), float(a_hi[p]),
                                  tied))
    target = obj.target if obj.is_risk else result.labs[result.lab_index(obj.target)]
    return Ranking(result.patients[pi], str(obj), entries, target)
