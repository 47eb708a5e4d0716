"""Treatment inputs u(t): dose schedules on a daily grid, from records or from a plan.

The model reads ``u`` as a tensor ``[n_days, n_treatments]`` of daily doses expressed in units
of the training cohort's typical daily dose of each treatment (piecewise constant per day).
Recorded history and hypothetical plans go through the same :func:`dose_schedule`.

Records become actions by how they were given (``Prop.DOSING``, set at ingest): a *pulse* (one
administration, a radiotherapy fraction) acts on the day it was given only; a *period* (a
prescription) acts from its start to its end, and one without an end lasts until the next
record of the same treatment, or through the whole grid for the latest one ("continue what
the patient is on now").
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import torch

from core.errors import TwinError
from graph.schema import NodeType
from graph.timeutil import days_between
from twin.features.records import PatientRecords, daily_dose, is_pulse
from twin.features.vocab import Normalisers, Vocabulary

__all__ = ["DoseAction", "actions_from_records", "dose_schedule"]

_TREATMENT_TYPES = (NodeType.MEDICATION, NodeType.PROCEDURE)


@dataclass(frozen=True)
class DoseAction:
    """Treatment ``code`` at ``dose`` (its canonical unit, per administration) ``per_day`` times a day.

    Active on days ``start_day <= d < stop_day`` counted from the forecast origin (negative =
    before it); ``stop_day=None`` means until the end of the grid. A pulse given at time ``t``
    is ``DoseAction(code, dose, t, floor(t) + 1)``: the day that contains ``t``.
    """

    code: str
    dose: float
    start_day: float = 0.0
    stop_day: float | None = None
    per_day: float = 1.0

    @property
    def daily(self) -> float:
        return self.dose * self.per_day

    @classmethod
    def pulse(cls, code: str, dose: float, day: float) -> DoseAction:
        """One administration at ``day`` (days from the origin): acts on that day only."""
        return cls(code, dose, day, math.floor(day) + 1.0)


def dose_schedule(
    actions: Sequence[DoseAction],
    vocab: Vocabulary,
    norms: Normalisers,
    n_days: int,
    *,
    strict: bool = True,
    first_day: int = 0,
) -> torch.Tensor:
    """Daily dose tensor ``[n_days, n_treatments]`` (float32) for ``actions`` on days
    ``first_day .. first_day + n_days - 1`` (counted from the origin).

    Doses of the same treatment on the same day add up. With ``strict`` an action whose
    treatment is not a model input, or with a negative dose, raises :class:`TwinError`;
    otherwise it is skipped.
    """
    u = np.zeros((n_days, vocab.n_treatments), dtype=np.float32)
    days = np.arange(first_day, first_day + n_days, dtype=np.float64)
    for a in actions:
        j = vocab.treatment(a.code)
        if j is None or a.dose < 0 or a.per_day < 0:
            if strict:
                why = "is not a treatment input of this model" if j is None else "has a negative dose"
                known = ", ".join(t.label for t in vocab.cohort.treatments) or "none"
                raise TwinError(f"dose action for treatment {a.code!r} {why} (inputs: {known})")
            continue
        stop = np.inf if a.stop_day is None else a.stop_day
        active = (days + 1 > a.start_day) & (days < stop)  # day d covers [d, d+1)
        u[active, j] += norms.dose(a.code, a.daily)
    return torch.from_numpy(u)


def actions_from_records(records: PatientRecords, t0: datetime, vocab: Vocabulary) -> list[DoseAction]:
    """Dose actions of the model's treatments in ``records``, with days counted from ``t0``.

    Pulses act on their own day; a period without a known end lasts until the next period of
    the same treatment starts (a new order supersedes the old one) or, failing that, to the end
    of the grid: for records cut at ``t0`` this is "continue what the patient is on now".
    """
    periods: dict[str, list[tuple[float, float | None, float]]] = defaultdict(list)
    out: list[DoseAction] = []
    for n in records.nodes:
        if n.type not in _TREATMENT_TYPES or vocab.treatment(n.code) is None or n.time is None:
            continue
        start = days_between(t0, n.time)
        if is_pulse(n):
            out.append(DoseAction.pulse(n.code or "", daily_dose(n), start))
            continue
        stop = days_between(t0, n.end) if n.end is not None else None
        periods[n.code or ""].append((start, stop, daily_dose(n)))
    for code, items in periods.items():
        items.sort(key=lambda x: x[0])
        for i, (start, stop, daily) in enumerate(items):
            if stop is None and i + 1 < len(items):
                stop = items[i + 1][0]
            out.append(DoseAction(code=code, dose=daily, start_day=start, stop_day=stop))
    return out
