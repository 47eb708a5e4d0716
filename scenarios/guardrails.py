"""Guardrails: plans outside what the model was trained on are flagged, never silently extrapolated.

Two checks per plan, against the model's vocabulary and normalisers:

* ``unknown_drug``: the plan gives a drug that is not a treatment input of the model (it never
  saw it, so the forecast would ignore it);
* ``dose_out_of_range``: a daily dose far outside the training range of that drug: above
  ``high`` × the largest (or, when only the typical dose is known, ``dose_ratio`` × the typical)
  daily dose, or positive but below the smallest seen ÷ ``high`` (typical ÷ ``dose_ratio``).

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

FlagKind = Literal["unknown_drug", "dose_out_of_range"]


@dataclass(frozen=True, slots=True)
class Flag:
    """One out-of-distribution finding in a plan."""

    plan: str
    kind: FlagKind
    drug: str
    message: str
    dose_mg_per_day: float | None = None
    allowed: tuple[float, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def dose_range(norms: Normalisers, code: str, *, high: float = 1.5, dose_ratio: float = 10.0) -> tuple[float, float] | None:
    """Daily doses of ``code`` the model may be trusted with, ``(low, high)``; ``None`` if unknown.

    Uses the training cohort's observed minimum/maximum when the normalisers carry them
    (``dose_min``/``dose_max``), else a band around the typical daily dose (``dose_scale``).
    """
    lo_seen = getattr(norms, "dose_min", {}).get(code)
    hi_seen = getattr(norms, "dose_max", {}).get(code)
    if lo_seen is not None and hi_seen is not None:
        return (float(lo_seen) / high, float(hi_seen) * high)
    typical = norms.dose_scale.get(code)
    if typical is None:
        return None
    return (typical / dose_ratio, typical * dose_ratio)


def check_plan(plan: ResolvedPlan, vocab: Vocabulary, norms: Normalisers, *, names: dict[str, str] | None = None,
               strict: bool = False) -> list[Flag]:
    """Flags for one plan (raises :class:`PlanError` on the first one when ``strict``)."""
    flags: list[Flag] = []
    for a in plan.actions:
        if a.kind != "give":
            continue
        label = f"{(names or {}).get(a.code, a.code)} (RxNorm {a.code})"
        if vocab.drug(a.code) is None:
            known = ", ".join(vocab.drugs) or "none"
            flags.append(Flag(plan.name, "unknown_drug", a.code,
                              f"{label} was never seen by the model (its drug inputs: {known}); its effect would be ignored",
                              a.mg_per_day))
            continue
        rng = dose_range(norms, a.code)
        if rng is not None and a.mg_per_day > 0 and not (rng[0] <= a.mg_per_day <= rng[1]):
            flags.append(Flag(plan.name, "dose_out_of_range", a.code,
                              f"{label} at {a.mg_per_day:g} mg/day is far outside the training range "
                              f"({rng[0]:g}–{rng[1]:g} mg/day)", a.mg_per_day, rng))
    if strict and flags:
        raise PlanError(flags[0].message + " (strict mode refuses out-of-distribution plans)",
                        plan=plan.name, field="actions")
    return flags


def check_plans(plans: Sequence[ResolvedPlan], vocab: Vocabulary, norms: Normalisers, *,
                names: dict[str, str] | None = None, strict: bool = False) -> list[Flag]:
    """Flags of all ``plans`` in order (strict: raise on the first)."""
    return [f for p in plans for f in check_plan(p, vocab, norms, names=names, strict=strict)]
