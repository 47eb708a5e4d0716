"""A resolved plan applied to a patient's factual therapy: the dose actions the model reads.

The factual actions (:func:`twin.features.treatment.actions_from_records`, days from the
forecast origin, history included) are kept up to the day the plan first changes each drug
(``baseline: current``) or up to the origin (``baseline: none``); the plan's own ``give``
actions are added. History before the origin is never altered, so every plan shares it.
"""

from __future__ import annotations

from collections.abc import Sequence

from scenarios.plan import ResolvedPlan
from twin.features.treatment import DoseAction

__all__ = ["plan_dose_actions"]


def plan_dose_actions(factual: Sequence[DoseAction], plan: ResolvedPlan) -> list[DoseAction]:
    """Dose actions of ``plan`` for a patient whose recorded therapy is ``factual``."""
    out: list[DoseAction] = []
    for a in factual:
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
    out.extend(DoseAction(a.code, a.mg_per_day, a.start, a.stop, 1.0) for a in plan.actions if a.kind == "give")
    return out
