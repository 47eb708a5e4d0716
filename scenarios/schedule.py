"""A resolved plan applied to a patient's factual therapy: the dose actions the model reads.

The factual actions (:func:`twin.features.treatment.actions_from_records`, days from the
forecast origin, history included) are kept up to the day the plan first changes each
treatment (``baseline: current``) or up to the origin (``baseline: none``); recorded single
administrations are kept whole under both (they were given; they never continue). The plan's
own ``give`` actions are added: continuous ones as one action, single administrations as
one-day pulses (:meth:`twin.features.treatment.DoseAction.pulse`). History before the origin
is never altered, so every plan shares it.
"""

from __future__ import annotations

from collections.abc import Sequence

from scenarios.plan import ResolvedAction, ResolvedPlan
from twin.features.treatment import DoseAction

__all__ = ["plan_dose_actions"]


def _dose_actions(action: ResolvedAction, until: float) -> list[DoseAction]:
    """The dose actions of one resolved ``give`` on days before ``until`` (none for a ``stop``)."""
    if action.kind != "give":
        return []
    if action.single:
        return [DoseAction.pulse(action.code, action.dose, d) for d in action.administration_days(until)]
    return [DoseAction(action.code, action.dose, action.start, action.stop, action.per_day)]


def plan_dose_actions(factual: Sequence[DoseAction], plan: ResolvedPlan, until: float) -> list[DoseAction]:
    """Dose actions of ``plan`` for a patient whose recorded therapy is ``factual``, on days before ``until``."""
    out: list[DoseAction] = []
    for a in factual:
        if a == DoseAction.pulse(a.code, a.dose, a.start_day):
            out.append(a)
            continue
        if plan.baseline == "none":
            cutoff = 0.0
        else:
            first = plan.first_change(a.code)
            cutoff = float("inf") if first is None else first
        stop = a.stop_day if a.stop_day is not None else float("inf")
        stop = min(stop, cutoff)
        if stop <= a.start_day:
            continue
        out.append(DoseAction(a.code, a.dose, a.start_day, None if stop == float("inf") else stop, a.per_day))
    for r in plan.actions:
        out.extend(_dose_actions(r, until))
    return out
