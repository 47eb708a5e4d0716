"""Treatment plans as validated data: what to give, how much, from when, until when.

A plan is a name, a *baseline* and a list of actions::

    name: metformin then add empagliflozin
    baseline: none            # "none": nothing is given unless an action says so
                              # "current": the patient's therapy at the origin continues
    actions:
      - drug: metformin       # RxNorm code ("6809") or a name the drug catalog resolves
        dose: 500
        unit: mg              # mg, g, mcg (converted to mg)
        frequency: bid        # daily, bid, tid, qid, q8h, weekly, ... → total daily dose
        start: 0              # days from the forecast origin, or an ISO date
      - drug: empagliflozin
        dose: 10
        start: 90
        stop: 270             # optional; the drug is not given from this day on
      - action: stop          # "stop drug X" (of the current therapy) from day 30
        drug: lisinopril
        start: 30

Semantics per drug: the baseline dose (0 for ``baseline: none``, the current daily dose for
``baseline: current``) holds until the drug's first ``give`` or ``stop``; a ``give`` sets the
daily dose over ``[start, stop)`` and nothing is given after its ``stop``; a ``stop`` ends the
drug from its ``start``. "No treatment" is ``baseline: none`` with no actions and "continue
current therapy" is ``baseline: current`` with no actions (see :meth:`TreatmentPlan.no_treatment`
and :meth:`TreatmentPlan.continue_current`).
"""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from core.errors import PlanError, RecordError
from graph.timeutil import days_between, utc
from graph.units import convert, normalize_unit
from scenarios.drugs import DrugCatalog, builtin_catalog

__all__ = [
    "Action",
    "ResolvedAction",
    "ResolvedPlan",
    "TreatmentPlan",
    "frequency_per_day",
    "load_plan",
    "load_plans",
    "unit_to_mg",
]

_FREQ = {
    "once": 1.0, "daily": 1.0, "qd": 1.0, "od": 1.0, "once daily": 1.0, "qam": 1.0, "qpm": 1.0, "qhs": 1.0,
    "bid": 2.0, "twice daily": 2.0, "tid": 3.0, "three times daily": 3.0, "qid": 4.0, "four times daily": 4.0,
    "qod": 0.5, "every other day": 0.5, "weekly": 1.0 / 7.0, "qw": 1.0 / 7.0, "once weekly": 1.0 / 7.0,
}
_QNH = re.compile(r"^q(\d{1,2})h$")

Day = float | date | datetime


def unit_to_mg(unit: str) -> float:
    """Factor turning an amount in ``unit`` into mg (any UCUM mass unit, and mcg). ``ValueError`` otherwise."""
    try:
        return convert(1.0, normalize_unit(unit) or "", "mg")
    except RecordError:
        raise ValueError(f"unit {unit!r} is not a mass unit this engine converts (use mg, g or mcg)") from None


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
    """One step of a plan: give ``drug`` at ``dose`` from ``start`` to ``stop``, or stop it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    action: Literal["give", "stop"] = "give"
    drug: str = Field(min_length=1, description="RxNorm code or a drug name the catalog resolves")
    dose: float | None = Field(default=None, description="amount per administration in `unit`")
    unit: str = "mg"
    frequency: str | float = "daily"
    start: Day = Field(default=0.0, description="days from the forecast origin, or an ISO date")
    stop: Day | None = Field(default=None, description="first day the drug is no longer given")

    @field_validator("dose", "frequency", "start", "stop", mode="before")
    @classmethod
    def _json_types(cls, v: Any, info: ValidationInfo) -> Any:
        """Only the JSON types the schema names: no ``true`` read as 1, no ``"5"`` read as 5
        (a number in a string is refused; ``start``/``stop`` strings must be ISO dates)."""
        name = info.field_name
        expected = {"dose": "a number", "frequency": "a frequency name (bid) or a number per day"}.get(
            name or "", "a number of days or an ISO date")
        if isinstance(v, bool):
            raise ValueError(f"{name} must be {expected}, not {str(v).lower()}")
        if isinstance(v, str) and name != "frequency":
            try:
                float(v)
            except ValueError:
                if name != "dose":
                    return v
            raise ValueError(f"{name} must be {expected}, not the string {v!r}")
        return v

    @field_validator("dose")
    @classmethod
    def _dose_ok(cls, v: float | None) -> float | None:
        if v is not None and (not math.isfinite(v) or v < 0):
            raise ValueError(f"dose must be a finite number >= 0, got {v}")
        return v

    @field_validator("unit")
    @classmethod
    def _unit_ok(cls, v: str) -> str:
        unit_to_mg(v)
        return v

    @field_validator("frequency")
    @classmethod
    def _freq_ok(cls, v: str | float) -> str | float:
        frequency_per_day(v)
        return v

    @field_validator("start", "stop")
    @classmethod
    def _day_ok(cls, v: Day | None) -> Day | None:
        if isinstance(v, float) and (not math.isfinite(v) or v < 0):
            raise ValueError(f"days from the origin must be a finite number >= 0 (a plan cannot change the past), got {v}")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> Action:
        if self.action == "give" and self.dose is None:
            raise ValueError(f"a 'give' action needs a dose (drug {self.drug!r})")
        if self.action == "stop" and (self.dose is not None or self.stop is not None):
            raise ValueError(f"a 'stop' action takes only drug and start (drug {self.drug!r})")
        if isinstance(self.start, float) and isinstance(self.stop, float) and self.stop <= self.start:
            raise ValueError(f"stop ({self.stop}) must be after start ({self.start})")
        return self

    @property
    def daily_dose_mg(self) -> float:
        """Total daily dose in mg (dose × unit factor × administrations per day); 0 for a stop."""
        if self.dose is None:
            return 0.0
        return self.dose * unit_to_mg(self.unit) * frequency_per_day(self.frequency)


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
    def stop_drug(cls, drug: str, at: Day = 0.0, name: str | None = None) -> TreatmentPlan:
        """Current therapy continues except ``drug``, which stops at ``at``."""
        return cls(name=name or f"stop {drug}", baseline="current",
                   actions=(Action(action="stop", drug=drug, start=at),))

    @classmethod
    def from_dict(cls, doc: Any, *, source: str | None = None) -> TreatmentPlan:
        """Validate a parsed JSON/YAML document; errors become :class:`PlanError` naming the field."""
        if not isinstance(doc, dict):
            raise PlanError(f"a plan must be a mapping with 'name' and 'actions', got {type(doc).__name__}", file=source)
        try:
            return cls.model_validate(doc)
        except ValidationError as exc:
            err = exc.errors()[0]
            loc = ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in err["loc"]).replace(".[", "[")
            msg = str(err["msg"]).removeprefix("Value error, ")
            name = doc.get("name") if isinstance(doc.get("name"), str) else None
            raise PlanError(msg, plan=name, field=loc or None, file=source) from None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form that :meth:`from_dict` reads back to an equal plan."""
        return self.model_dump(mode="json", exclude_defaults=False)

    def resolve(self, origin: datetime | None = None, catalog: DrugCatalog | None = None) -> ResolvedPlan:
        """Codes, mg/day and days from ``origin``; refuses contradictory actions.

        ``origin`` is needed only when an action uses a calendar date. ``catalog`` resolves
        drug names (default: the names of the built-in regimens, :func:`scenarios.drugs.builtin_catalog`).
        """
        cat = catalog if catalog is not None else builtin_catalog()
        out: list[ResolvedAction] = []
        for i, a in enumerate(self.actions):
            where = f"actions[{i}]"
            code = cat.resolve(a.drug, plan=self.name, field=f"{where}.drug")
            start = self._day(a.start, origin, f"{where}.start")
            stop = None if a.stop is None else self._day(a.stop, origin, f"{where}.stop")
            if stop is not None and stop <= start:
                raise PlanError(f"stop (day {stop:g}) must be after start (day {start:g})", plan=self.name, field=f"{where}.stop")
            out.append(ResolvedAction(a.action, code, a.daily_dose_mg, start, stop, i))
        _check_contradictions(self.name, out)
        return ResolvedPlan(self.name, self.baseline, tuple(out))

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
    """An action with its drug as an RxNorm code, dose in mg/day and times in days from the origin."""

    kind: Literal["give", "stop"]
    code: str
    mg_per_day: float
    start: float
    stop: float | None
    index: int

    def active(self, t: float) -> bool:
        return self.kind == "give" and self.start <= t and (self.stop is None or t < self.stop)


@dataclass(frozen=True, slots=True)
class ResolvedPlan:
    """A plan ready to become a dose schedule (see :func:`scenarios.schedule.plan_schedule`)."""

    name: str
    baseline: Literal["none", "current"]
    actions: tuple[ResolvedAction, ...]

    @property
    def codes(self) -> tuple[str, ...]:
        """Drug codes the plan mentions, in first-mention order."""
        return tuple(dict.fromkeys(a.code for a in self.actions))

    def first_change(self, code: str) -> float | None:
        """Day of the first action on ``code`` (``None``: the plan leaves it at baseline)."""
        days = [a.start for a in self.actions if a.code == code]
        return min(days) if days else None

    def daily_dose(self, code: str, t: float, current_mg: float = 0.0) -> float:
        """mg/day of ``code`` on day ``t`` given the patient's current daily dose at the origin."""
        first = self.first_change(code)
        if first is None or t < first:
            return current_mg if self.baseline == "current" else 0.0
        for a in self.actions:
            if a.code == code and a.active(t):
                return a.mg_per_day
        return 0.0


def _check_contradictions(name: str, actions: list[ResolvedAction]) -> None:
    by_drug: dict[str, list[ResolvedAction]] = defaultdict(list)
    for a in actions:
        by_drug[a.code].append(a)
    for code, acts in by_drug.items():
        gives = sorted((a for a in acts if a.kind == "give"), key=lambda a: a.start)
        for prev, nxt in zip(gives, gives[1:], strict=False):
            if prev.stop is None or prev.stop > nxt.start:
                raise PlanError(
                    f"actions[{prev.index}] and actions[{nxt.index}] both give RxNorm {code} from day {nxt.start:g}; "
                    "give each drug over non-overlapping periods (set 'stop' on the earlier one)",
                    plan=name, field=f"actions[{nxt.index}]")
        for s in (a for a in acts if a.kind == "stop"):
            for g in gives:
                if g.start < s.start and (g.stop is None or s.start < g.stop):
                    raise PlanError(
                        f"actions[{s.index}] stops RxNorm {code} on day {s.start:g} while actions[{g.index}] gives it "
                        f"then; end the give with 'stop: {s.start:g}' instead",
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
