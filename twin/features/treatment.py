"""Treatment inputs u(t): dose schedules on a daily grid, from records or from a plan.

The model reads ``u`` as a tensor ``[n_days, n_drugs]`` of daily doses expressed in units of
the training cohort's typical daily dose of each drug (piecewise constant per day). Recorded
history and hypothetical plans go through the same :func:`dose_schedule`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import torch

from core.errors import TwinError
from graph.schema import NodeType
from graph.timeutil import days_between
from twin.features.records import PatientRecords, daily_dose
from twin.features.vocab import Normalisers, Vocabulary

__all__ = ["DoseAction", "actions_from_records", "dose_schedule"]


@dataclass(frozen=True)
class DoseAction:
    """Drug ``code`` at ``dose`` (its unit, per administration) ``per_day`` times a day.

    Active on days ``start_day <= d < stop_day`` counted from the forecast origin (negative =
    before it); ``stop_day=None`` means until the end of the grid.
    """

    code: str
    dose: float
    start_day: float = 0.0
    stop_day: float | None = None
    per_day: float = 1.0

    @property
    def daily(self) -> float:
        return self.dose * self.per_day


def dose_schedule(
    actions: Sequence[DoseAction],
    vocab: Vocabulary,
    norms: Normalisers,
    n_days: int,
    *,
    strict: bool = True,
    first_day: int = 0,
) -> torch.Tensor:
    """Daily dose tensor ``[n_days, n_drugs]`` (float32) for ``actions`` on days
    ``first_day .. first_day + n_days - 1`` (counted from the origin).

    Doses of the same drug on the same day add up. With ``strict`` an action whose drug is not
    a model input, or with a negative dose, raises :class:`TwinError`; otherwise it is skipped.
    """
    u = np.zeros((n_days, vocab.n_drugs), dtype=np.float32)
    days = np.arange(first_day, first_day + n_days, dtype=np.float64)
    for a in actions:
        j = vocab.drug(a.code)
        if j is None or a.dose < 0 or a.per_day < 0:
            if strict:
                why = "is not a treatment input of this model" if j is None else "has a negative dose"
                raise TwinError(f"dose action for drug {a.code!r} {why} (inputs: {', '.join(vocab.drugs) or 'none'})")
            continue
        stop = np.inf if a.stop_day is None else a.stop_day
        active = (days + 1 > a.start_day) & (days < stop)  # day d covers [d, d+1)
        u[active, j] += norms.dose(a.code, a.daily)
    return torch.from_numpy(u)


def actions_from_records(records: PatientRecords, t0: datetime, vocab: Vocabulary) -> list[DoseAction]:
    """Dose actions of the model's drugs in ``records``, with days counted from ``t0``.

    A prescription with no known end lasts until the next prescription of the same drug
    starts (a new order supersedes the old one) or, failing that, to the end of the grid: for
    records cut at ``t0`` this is "continue what the patient is on now".
    """
    by_drug: dict[str, list[tuple[float, float | None, float]]] = defaultdict(list)
    for n in records.nodes:
        if n.type is not NodeType.MEDICATION or vocab.drug(n.code) is None or n.time is None:
            continue
        start = days_between(t0, n.time)
        stop = days_between(t0, n.end) if n.end is not None else None
        by_drug[n.code or ""].append((start, stop, daily_dose(n)))
    out: list[DoseAction] = []
    for code, items in by_drug.items():
        items.sort(key=lambda x: x[0])
        for i, (start, stop, daily) in enumerate(items):
            if stop is None and i + 1 < len(items):
                stop = items[i + 1][0]
            out.append(DoseAction(code=code, dose=daily, start_day=start, stop_day=stop))
    return out
