"""Guardrails: plans outside what the model was trained on are flagged, never silently extrapolated.

Two checks per plan, against the model's vocabulary and normalisers, each in the treatment's
own unit (mg, mg/m2, Gy, ...):

* ``unknown_treatment``: the plan gives a treatment that is not an input of the model (it never
  saw it, so the forecast would ignore it). Plans resolved against the model's own catalogue
  never do (:meth:`TreatmentPlan.resolve` refuses unknown treatments); this guards plans
  resolved elsewhere;
* ``dose_out_of_range``: the amount given on a day (dose x administrations a day; a single
  administration's dose) is positive and more than ``ratio`` times above or below the training
  cohort's typical daily amount of that treatment.

With ``strict=True`` the first flag raises :class:`PlanError` instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from core.errors import PlanError
from scenarios.plan import ResolvedPlan
from twin.features.vocab import Normalisers, Vocabulary

__all__ = ["Flag", "check_plan", "check_plans", "dose_range"]

FlagKind = Literal["unknown_treatment", "dose_out_of_range"]


@dataclass(frozen=True, slots=True)
class Flag:
    """One out-of-distribution finding in a plan (``daily_dose`` and ``allowed`` in ``unit`` per day)."""

    plan: str
    kind: FlagKind
    treatment: str
    message: str
    daily_dose: float | None = None
    unit: str | None = None
    allowed: tuple[float, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def dose_range(norms: Normalisers, code: str, *, ratio: float = 10.0) -> tuple[float, float] | None:
    """Daily amounts of ``code`` the model may be trusted with, ``(low, high)`` in its unit; ``None`` if unknown.

    A band of ``ratio`` around the training cohort's typical daily amount (``norms.dose_scale``).
    """
    typical = norms.dose_scale.get(code)
    if typical is None:
        return None
    return (typical / ratio, typical * ratio)


def _per_day(amount: float, unit: str) -> str:
    return f"{amount:g}/day" if unit == "1" else f"{amount:g} {unit}/day"


def check_plan(plan: ResolvedPlan, vocab: Vocabulary, norms: Normalisers, *, strict: bool = False) -> list[Flag]:
    """Flags for one plan (raises :class:`PlanError` on the first one when ``strict``)."""
    flags: list[Flag] = []
    where: list[int] = []  # action index of each flag
    for a in plan.actions:
        if a.kind != "give":
            continue
        label, unit, amount = a.treatment.label, a.treatment.unit, a.daily
        if vocab.treatment(a.code) is None:
            known = ", ".join(t.label for t in vocab.cohort.treatments) or "none"
            flags.append(Flag(plan.name, "unknown_treatment", a.code,
                              f"{label} is not a treatment input of the model (its inputs: {known}); "
                              "its effect would be ignored", amount, unit))
            where.append(a.index)
            continue
        rng = dose_range(norms, a.code)
        if rng is not None and amount > 0 and not (rng[0] <= amount <= rng[1]):
            flags.append(Flag(plan.name, "dose_out_of_range", a.code,
                              f"{label} at {_per_day(amount, unit)} is far outside the training range "
                              f"({rng[0]:g}–{_per_day(rng[1], unit)})", amount, unit, rng))
            where.append(a.index)
    if strict and flags:
        raise PlanError(flags[0].message + " (strict mode refuses out-of-distribution plans)",
                        plan=plan.name, field=f"actions[{where[0]}]")
    return flags


def check_plans(plans: Sequence[ResolvedPlan], vocab: Vocabulary, norms: Normalisers, *,
                strict: bool = False) -> list[Flag]:
    """Flags of all ``plans`` in order (strict: raise on the first)."""
    return [f for p in plans for f in check_plan(p, vocab, norms, strict=strict)]
