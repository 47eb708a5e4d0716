"""Treatment plans as validated data: which treatment, how much, on which days.

A plan is a name, a *baseline* and a list of actions. A treatment is anything the model takes
as an input (a drug or a procedure), named by its code in the records or by its display name
(see :class:`scenarios.treatments.TreatmentCatalog`)::

    name: carboplatin weekly with radiotherapy
    baseline: none              # "none": nothing is given unless an action says so
                                # "current": the patient's therapy at the origin continues
    actions:
      - treatment: carboplatin  # a code ("40048") or a name from the model's records
        dose: 300
        unit: mg/m2             # default: the treatment's own unit in the model; converted to it
        every: 7                # single administrations on days 0, 7, 14, 21
        times: 4
      - treatment: radiotherapy
        dose: 2
        unit: Gy
        at: [0, 1, 2, 3, 4]     # single administrations on these days ("once on day t": at: [t])
      - treatment: metformin
        dose: 500
        frequency: bid          # continuous dosing: daily, bid, tid, qid, q8h, weekly, a number per day
        start: 0                # days from the forecast origin, or an ISO date
        stop: 90                # optional; not given from this day on (open: to the horizon)
      - action: stop            # "stop treatment X" (of the current therapy) from day 30
        treatment: lisinopril
        start: 30

Schedules: an action without ``every``/``at`` doses continuously, ``frequency``
administrations a day on days ``start <= d < stop`` ("daily for N days from a" is ``start: a,
stop: a+N``). ``every: k`` gives single administrations on ``start, start+k, ...`` before
``stop`` (or ``times`` of them; open: to the horizon); ``at`` lists their days. A single
administration acts on the day it is given only. The old key ``drug`` is read as ``treatment``.

Semantics per treatment: the baseline (nothing for ``baseline: none``, the recorded therapy for
``baseline: current``) holds until the plan's first action on that treatment; from then on the
plan alone says what is given, and a ``stop`` ends the current therapy from its ``start``.
Continuous gives of one treatment must not overlap; single administrations add to whatever else
is given that day. Recorded single administrations (a chemotherapy infusion, a radiotherapy
fraction) are history under either baseline and never continue: "continue current therapy"
continues prescriptions only. "No treatment" is ``baseline: none`` with no actions and "continue
current therapy" ``baseline: current`` with no actions (:meth:`TreatmentPlan.no_treatment`,
:meth:`TreatmentPlan.continue_current`).
"""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from core.errors import PlanError, RecordError
from graph.timeutil import days_between, utc
from graph.units import convert_dose, dose_quantity
from scenarios.treatments import TreatmentCatalog
from twin.spec import Treatment

__all__ = [
    "MAX_ADMINISTRATIONS",
    "Action",
    "ResolvedAction",
    "ResolvedPlan",
    "TreatmentPlan",
    "frequency_per_day",
    "load_plan",
    "load_plans",
]

#: Most single administrations one action lists (``times``, ``at``): ten years of daily ones.
MAX_ADMINISTRATIONS = 3650

_FREQ = {
    "once": 1.0, "daily": 1.0, "qd": 1.0, "od": 1.0, "once daily": 1.0, "qam": 1.0, "qpm": 1.0, "qhs": 1.0,
    "bid": 2.0, "twice daily": 2.0, "tid": 3.0, "three times daily": 3.0, "qid": 4.0, "four times daily": 4.0,
    "qod": 0.5, "every other day": 0.5, "weekly": 1.0 / 7.0, "qw": 1.0 / 7.0, "once weekly": 1.0 / 7.0,
}
_QNH = re.compile(r"^q(\d{1,2})h$")
#: Fields of a ``give`` that describe its schedule (a ``stop`` takes none of them).
_GIVE_ONLY = ("dose", "unit", "frequency", "stop", "every", "times", "at")


def _json_value(v: Any, info: ValidationInfo) -> Any:
    """Only the JSON types the schema names: no ``true`` read as 1, no ``"5"`` read as 5
    (a number in a string is refused; strings of day fields must be ISO dates)."""
    name = info.field_name or "value"
    expected = {"dose": "a number", "every": "a number of days",
                "frequency": "a frequency name (bid) or a number per day"}.get(name, "a number of days or an ISO date")
    if isinstance(v, bool):
        raise ValueError(f"{name} must be {expected}, not {str(v).lower()}")
    if isinstance(v, str) and name != "frequency":
        try:
            float(v)
        except ValueError:
            if name in ("start", "stop", "at"):
                return v
        raise ValueError(f"{name} must be {expected}, not the string {v!r}")
    return v


def _day_ok(v: Any) -> Any:
    if isinstance(v, float) and (not math.isfinite(v) or v < 0):
        raise ValueError(f"days from the origin must be a finite number >= 0 (a plan cannot change the past), got {v}")
    return v


Day = float | date | datetime
#: A day of a plan: days from the forecast origin (a number >= 0) or an ISO date.
DayIn = Annotated[Day, BeforeValidator(_json_value), AfterValidator(_day_ok)]


class _FieldError(ValueError):
    """A cross-field check failing on ``field`` (so errors name it, not just the action)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def frequency_per_day(freq: str | float) -> float:
    """Administrations per day of ``freq`` (``"bid"`` → 2, ``"q8h"`` → 3, ``"weekly"`` → 1/7, ``2`` → 2)."""
    if isinstance(freq, bool):
        raise ValueError(f"frequency {freq!r} is not a frequency")
    if isinstance(freq, int | float):
        if not math.isfinite(freq) or freq <= 0:
            raise ValueError(f"frequency must be a positive number of administrations per day, got {freq!r}")
        return float(freq)
    key = " ".join(str(freq).strip().lower().split())
    if key in _FREQ:
        return _FREQ[key]
    m = _QNH.match(key)
    if m and 1 <= int(m.group(1)) <= 72:
        return 24.0 / int(m.group(1))
    raise ValueError(f"unknown frequency {freq!r} (use daily, bid, tid, qid, qNh, qod, weekly or a number per day)")


class Action(BaseModel):
    """One step of a plan: give ``treatment`` at ``dose`` on a schedule, or stop it (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    action: Literal["give", "stop"] = "give"
    treatment: str = Field(min_length=1, max_length=200, description=(
        "A treatment input of the model (drug or procedure): its code as in the records, its display name, or a "
        "distinctive word of that name. The old key `drug` is accepted."))
    dose: float | None = Field(default=None, description="Amount per administration, in `unit`.")
    unit: str | None = Field(default=None, min_length=1, max_length=40, description=(
        "UCUM unit of `dose` (mg, g, mcg, mg/m2, mg/kg, Gy, cGy, [iU], ...); default: the treatment's unit in the "
        "model's specification. Converted to that unit; a unit of another kind (mg for an mg/m2 treatment) is refused."))
    frequency: str | float = Field(default="daily", description=(
        "Continuous dosing only: administrations per day (daily, bid, tid, qid, qNh, qod, weekly, or a number)."))
    start: DayIn = Field(default=0.0, description="First day: days from the forecast origin, or an ISO date.")
    stop: DayIn | None = Field(default=None, description=(
        "First day the treatment is no longer given (continuous dosing and `every`); default: the horizon."))
    every: float | None = Field(default=None, ge=1, allow_inf_nan=False, description=(
        "Single administrations every this many days from `start`, before `stop` or `times` of them."))
    times: int | None = Field(default=None, ge=1, le=MAX_ADMINISTRATIONS, strict=True,
                              description="Number of administrations of an `every` schedule.")
    at: tuple[DayIn, ...] | None = Field(default=None, min_length=1, max_length=MAX_ADMINISTRATIONS, description=(
        "Days of single administrations (days from the origin or ISO dates); `[t]` is once on day t."))

    @model_validator(mode="before")
    @classmethod
    def _old_key(cls, data: Any) -> Any:
        """Plan files written before procedures were treatments say ``drug``."""
        if isinstance(data, dict) and "drug" in data:
            if "treatment" in data:
                raise _FieldError("drug", "give the treatment once: 'drug' is the old name of 'treatment'")
            data = {("treatment" if k == "drug" else k): v for k, v in data.items()}
        return data

    @field_validator("dose", "frequency", "every", mode="before")
    @classmethod
    def _json_types(cls, v: Any, info: ValidationInfo) -> Any:
        return _json_value(v, info)

    @field_validator("dose")
    @classmethod
    def _dose_ok(cls, v: float | None) -> float | None:
        if v is not None and (not math.isfinite(v) or v < 0):
            raise ValueError(f"dose must be a finite number >= 0, got {v}")
        return v

    @field_validator("unit")
    @classmethod
    def _unit_ok(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                dose_quantity(1.0, v)
            except RecordError as exc:
                raise ValueError(str(exc)) from None
        return v

    @field_validator("frequency")
    @classmethod
    def _freq_ok(cls, v: str | float) -> str | float:
        frequency_per_day(v)
        return v

    @model_validator(mode="after")
    def _consistent(self) -> Action:
        multiple = frequency_per_day(self.frequency) != 1.0
        set_here = [f for f in _GIVE_ONLY if (multiple if f == "frequency" else getattr(self, f) is not None)]
        if self.action == "stop":
            if set_here:
                raise _FieldError(set_here[0], f"a 'stop' action takes only treatment and start, not {set_here[0]} "
                                               f"(treatment {self.treatment!r})")
            return self
        if self.dose is None:
            raise _FieldError("dose", f"a 'give' action needs a dose (treatment {self.treatment!r})")
        if self.at is not None:
            bad = [f for f in ("stop", "every", "times", "frequency") if f in set_here]
            if bad or self.start != 0:
                f = bad[0] if bad else "start"
                raise _FieldError(f, f"{f} does not apply to an 'at' schedule: at lists the days of single "
                                     "administrations")
        if self.every is not None and multiple:
            raise _FieldError("frequency", "frequency applies to continuous dosing; with 'every' each day is one "
                                           "administration (give more by dose)")
        if self.times is not None:
            if self.every is None:
                raise _FieldError("times", "times counts the administrations of an 'every' schedule: add every: DAYS")
            if self.stop is not None:
                raise _FieldError("times", "give either stop or times, not both")
        if isinstance(self.start, float) and isinstance(self.stop, float) and self.stop <= self.start:
            raise _FieldError("stop", f"stop ({self.stop:g}) must be after start ({self.start:g})")
        return self


class TreatmentPlan(BaseModel):
    """A named treatment plan (see the module docstring for the file format and semantics)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    description: str = ""
    baseline: Literal["none", "current"] = "none"
    actions: tuple[Action, ...] = ()

    @classmethod
    def no_treatment(cls, name: str = "no treatment") -> TreatmentPlan:
        """Nothing is given from the origin on."""
        return cls(name=name, baseline="none")

    @classmethod
    def continue_current(cls, name: str = "continue current therapy") -> TreatmentPlan:
        """The therapy active at the origin continues unchanged."""
        return cls(name=name, baseline="current")

    @classmethod
    def stop_treatment(cls, treatment: str, at: Day = 0.0, name: str | None = None) -> TreatmentPlan:
        """Current therapy continues except ``treatment``, which stops at ``at``."""
        return cls(name=name or f"stop {treatment}", baseline="current",
                   actions=(Action(action="stop", treatment=treatment, start=at),))

    @classmethod
    def from_dict(cls, doc: Any, *, source: str | None = None) -> TreatmentPlan:
        """Validate a parsed JSON/YAML document; errors become :class:`PlanError` naming the field."""
        if not isinstance(doc, dict):
            raise PlanError(f"a plan must be a mapping with 'name' and 'actions', got {type(doc).__name__}", file=source)
        try:
            return cls.model_validate(doc)
        except ValidationError as exc:
            err = exc.errors()[0]
            loc = list(err["loc"])
            cause = (err.get("ctx") or {}).get("error")
            if isinstance(cause, _FieldError):
                loc.append(cause.field)
            field = ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in loc).replace(".[", "[")
            msg = str(err["msg"]).removeprefix("Value error, ")
            name = doc.get("name") if isinstance(doc.get("name"), str) else None
            raise PlanError(msg, plan=name, field=field or None, file=source) from None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form that :meth:`from_dict` reads back to an equal plan."""
        return self.model_dump(mode="json", exclude_none=True)

    @property
    def uses_dates(self) -> bool:
        """Whether an action names a calendar date (its resolution then depends on the origin)."""
        return any(not isinstance(d, int | float) for a in self.actions for d in (a.start, a.stop, *(a.at or ()))
                   if d is not None)

    def resolve(self, catalog: TreatmentCatalog, origin: datetime | None = None) -> ResolvedPlan:
        """Treatments, doses in each treatment's unit and days from ``origin``; refuses
        unknown treatments, unconvertible units and contradictory actions.

        ``catalog`` holds the model's treatments (``TreatmentCatalog(ens.cohort.treatments)``);
        ``origin`` is needed only when an action uses a calendar date.
        """
        out: list[ResolvedAction] = []
        for i, a in enumerate(self.actions):
            where = f"actions[{i}]"
            tr = catalog.resolve(a.treatment, plan=self.name, field=f"{where}.treatment")
            start = self._day(a.start, origin, f"{where}.start")
            if a.action == "stop":
                out.append(ResolvedAction("stop", tr, 0.0, start, None, i))
                continue
            dose = self._dose(a, tr, where)
            stop = None if a.stop is None else self._day(a.stop, origin, f"{where}.stop")
            if stop is not None and stop <= start:
                raise PlanError(f"stop (day {stop:g}) must be after start (day {start:g})", plan=self.name,
                                field=f"{where}.stop")
            if a.at is not None or (a.every is not None and a.times is not None):
                days = self._pulse_days(a, start, origin, where)
                out.append(ResolvedAction("give", tr, dose, days[0], math.floor(days[-1]) + 1.0, i, at=days))
            elif a.every is not None:
                out.append(ResolvedAction("give", tr, dose, start, stop, i, every=a.every))
            else:
                out.append(ResolvedAction("give", tr, dose, start, stop, i, per_day=frequency_per_day(a.frequency)))
        _check_contradictions(self.name, out)
        return ResolvedPlan(self.name, self.baseline, tuple(out))

    def _dose(self, a: Action, tr: Treatment, where: str) -> float:
        """``a.dose`` in the treatment's unit."""
        assert a.dose is not None  # a give has a dose (Action._consistent)
        if a.unit is None:
            return a.dose
        try:
            return convert_dose(a.dose, a.unit, tr.unit)
        except RecordError as exc:
            raise PlanError(f"unit {a.unit!r} does not convert to {tr.unit!r}, the dose unit of {tr.label} in this "
                            f"model ({exc})", plan=self.name, field=f"{where}.unit") from None

    def _pulse_days(self, a: Action, start: float, origin: datetime | None, where: str) -> tuple[float, ...]:
        """Sorted days of an ``at`` or ``every`` + ``times`` schedule; refuses a day listed twice."""
        if a.at is None:
            assert a.every is not None and a.times is not None
            return tuple(start + k * a.every for k in range(a.times))
        days = [self._day(d, origin, f"{where}.at[{k}]") for k, d in enumerate(a.at)]
        seen: dict[float, int] = {}
        for k, d in enumerate(days):
            if d in seen:
                raise PlanError(f"at lists day {d:g} twice (entries {seen[d]} and {k}); give the dose once",
                                plan=self.name, field=f"{where}.at[{k}]")
            seen[d] = k
        return tuple(sorted(days))

    def _day(self, v: Day, origin: datetime | None, field: str) -> float:
        if isinstance(v, int | float):
            return float(v)
        if origin is None:
            raise PlanError("a calendar date needs a forecast origin to be turned into days", plan=self.name, field=field)
        dt = utc(v if isinstance(v, datetime) else datetime(v.year, v.month, v.day))
        d = days_between(utc(origin), dt)
        if d < -1e-9:
            raise PlanError(f"{dt.date()} is before the forecast origin {utc(origin).date()}; a plan cannot change the past",
                            plan=self.name, field=field)
        return max(d, 0.0)


@dataclass(frozen=True, slots=True)
class ResolvedAction:
    """An action with its treatment, dose per administration in the treatment's unit and days
    from the origin.

    A ``give`` doses continuously (``per_day`` administrations a day on days ``start <= d <
    stop``) unless it is a series of single administrations: on the days ``at``, or ``every``
    days from ``start`` before ``stop``. For ``at``, ``start``/``stop`` span the days it acts on.
    """

    kind: Literal["give", "stop"]
    treatment: Treatment
    dose: float
    start: float
    stop: float | None
    index: int
    per_day: float = 1.0
    every: float | None = None
    at: tuple[float, ...] | None = None

    @property
    def code(self) -> str:
        return self.treatment.code

    @property
    def single(self) -> bool:
        """Whether this give is a series of single administrations (each acts on its own day)."""
        return self.at is not None or self.every is not None

    @property
    def daily(self) -> float:
        """Amount given on a day the action acts on, in the treatment's unit (0 for a stop)."""
        return 0.0 if self.kind == "stop" else self.dose * (1.0 if self.single else self.per_day)

    def administration_days(self, until: float) -> tuple[float, ...]:
        """Days before ``until`` of the single administrations (empty for continuous dosing)."""
        if self.at is not None:
            return tuple(d for d in self.at if d < until)
        if self.every is None or self.kind == "stop":
            return ()
        end = until if self.stop is None else min(self.stop, until)
        n = max(0, math.ceil((end - self.start) / self.every))
        return tuple(d for d in (self.start + k * self.every for k in range(n)) if d < end)


@dataclass(frozen=True, slots=True)
class ResolvedPlan:
    """A plan ready to become a dose schedule (see :func:`scenarios.schedule.plan_dose_actions`)."""

    name: str
    baseline: Literal["none", "current"]
    actions: tuple[ResolvedAction, ...]

    def first_change(self, code: str) -> float | None:
        """Day of the first action on ``code`` (``None``: the plan leaves it at baseline)."""
        days = [a.start for a in self.actions if a.code == code]
        return min(days) if days else None


def _check_contradictions(name: str, actions: list[ResolvedAction]) -> None:
    by_code: dict[str, list[ResolvedAction]] = defaultdict(list)
    for a in actions:
        by_code[a.code].append(a)
    for acts in by_code.values():
        gives = sorted((a for a in acts if a.kind == "give"), key=lambda a: a.start)
        continuous = [a for a in gives if not a.single]
        for prev, nxt in zip(continuous, continuous[1:], strict=False):
            if prev.stop is None or prev.stop > nxt.start:
                raise PlanError(
                    f"actions[{prev.index}] and actions[{nxt.index}] both give {nxt.treatment.label} continuously "
                    f"from day {nxt.start:g}; give it over non-overlapping periods (set 'stop' on the earlier one)",
                    plan=name, field=f"actions[{nxt.index}]")
        for s in (a for a in acts if a.kind == "stop"):
            for g in gives:
                if g.start < s.start and (g.stop is None or s.start < g.stop):
                    raise PlanError(
                        f"actions[{s.index}] stops {s.treatment.label} on day {s.start:g} while actions[{g.index}] "
                        f"gives it then; end that give by day {s.start:g} instead",
                        plan=name, field=f"actions[{s.index}]")


def _read_doc(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PlanError(f"cannot read plan file: {exc.strerror or exc}", file=str(path)) from None
    try:
        if path.suffix.lower() == ".json":
            return json.loads(text)
        import yaml

        return yaml.safe_load(text)
    except (json.JSONDecodeError, ValueError) as exc:
        raise PlanError(f"not valid JSON: {exc}", file=str(path)) from None
    except Exception as exc:  # yaml.YAMLError, kept narrow below
        import yaml

        if isinstance(exc, yaml.YAMLError):
            raise PlanError(f"not valid YAML: {exc}", file=str(path)) from None
        raise


def load_plans(path: str | Path) -> list[TreatmentPlan]:
    """Plans in a JSON/YAML file: one plan mapping, a list of them, or ``{plans: [...]}``."""
    p = Path(path)
    doc = _read_doc(p)
    items = doc.get("plans") if isinstance(doc, dict) and "plans" in doc else doc
    items = items if isinstance(items, list) else [items]
    if not items:
        raise PlanError("the file holds no plan", file=str(p))
    plans = [TreatmentPlan.from_dict(d, source=str(p)) for d in items]
    names = [pl.name for pl in plans]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise PlanError(f"plan names must be unique within a file, repeated: {sorted(dup)}", file=str(p))
    return plans


def load_plan(path: str | Path) -> TreatmentPlan:
    """The single plan in a JSON/YAML file (use :func:`load_plans` for files holding several)."""
    plans = load_plans(path)
    if len(plans) != 1:
        raise PlanError(f"expected one plan, the file holds {len(plans)}; use load_plans", file=str(path))
    return plans[0]
