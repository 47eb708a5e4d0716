"""The cohort specification: what a model forecasts, which treatments drive it, on which time scales.

Derived from the training records unless the user sets parts of it (:class:`SpecRequest`),
saved in every checkpoint, printed by ``twin train`` and returned by the API's model listing.
Nothing here is tied to one data set: daily oncology records get daily scales and yearly labs
long ones, because the scales follow the cohort's observation cadence.

Torch-free on purpose (the CLI and the API show and check it without loading the model).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, cast

import numpy as np

from core.errors import ConfigError
from graph.display import display_unit

__all__ = [
    "TRANSFORMS",
    "EFFECTS",
    "CohortSpec",
    "Effect",
    "SpecRequest",
    "Target",
    "TimeScales",
    "Transform",
    "Treatment",
    "TreatmentKind",
    "derive_scales",
    "forward_transform",
    "inverse_transform",
]

Transform = Literal["identity", "log1p", "positive"]
#: Value transforms of a target before standardisation: ``log1p`` for positive, skewed values
#: whose changes are proportional (a tumour volume); ``positive`` (inverse softplus) keeps
#: forecasts above zero while staying linear for large values.
TRANSFORMS: tuple[str, ...] = ("identity", "log1p", "positive")
TreatmentKind = Literal["medication", "procedure"]
Effect = Literal["level", "lasting"]
#: How a treatment's effect behaves: ``level`` lasts while it is given (an antihypertensive, a
#: statin); ``lasting`` accumulates with each dose and stays after it (a cytotoxic drug or a
#: radiotherapy fraction shrinking a tumour). Derived from how it was given: mostly single
#: administrations -> lasting, mostly prescriptions over a period -> level.
EFFECTS: tuple[str, ...] = ("level", "lasting")

_TINY = 1e-6


def forward_transform(kind: str, values: np.ndarray | float) -> np.ndarray:
    """``values`` in the target's own unit -> the model's (transformed) scale."""
    v = np.asarray(values, np.float64)
    if kind == "identity":
        return v
    if kind == "log1p":
        return np.log1p(np.maximum(v, -1.0 + _TINY))
    if kind == "positive":
        v = np.maximum(v, _TINY)
        return np.where(v > 30.0, v, np.log(np.expm1(np.minimum(v, 30.0))))
    raise ConfigError(f"unknown target transform {kind!r} (use one of {', '.join(TRANSFORMS)})")


def inverse_transform(kind: str, y: np.ndarray | float) -> np.ndarray:
    """The model's scale -> the target's own unit (monotone, so quantiles map to quantiles)."""
    y = np.asarray(y, np.float64)
    if kind == "identity":
        return y
    if kind == "log1p":
        return np.expm1(np.minimum(y, 700.0))
    if kind == "positive":
        return np.logaddexp(0.0, y)
    raise ConfigError(f"unknown target transform {kind!r} (use one of {', '.join(TRANSFORMS)})")


@dataclass(frozen=True)
class Target:
    """A forecast target: an observation code, its display name and unit, and its transform."""

    code: str
    name: str = ""
    unit: str = ""
    transform: Transform = "identity"

    def __post_init__(self) -> None:
        if self.transform not in TRANSFORMS:
            raise ConfigError(f"target {self.code}: transform must be one of {', '.join(TRANSFORMS)}, "
                              f"got {self.transform!r}")


@dataclass(frozen=True)
class Treatment:
    """A treatment input: a drug (any Medication record) or a procedure (e.g. a radiotherapy
    fraction), its display name in the records, the canonical unit of its dose per day (``1``
    for records without a dose: one administration counts as one unit) and how its effect
    behaves (:data:`EFFECTS`)."""

    code: str
    name: str = ""
    kind: TreatmentKind = "medication"
    unit: str = "1"
    effect: Effect = "level"

    def __post_init__(self) -> None:
        if self.effect not in EFFECTS:
            raise ConfigError(f"treatment {self.code}: effect must be one of {', '.join(EFFECTS)}, got {self.effect!r}")

    @property
    def label(self) -> str:
        return f"{self.name} ({self.code})" if self.name and self.name != self.code else self.code


@dataclass(frozen=True)
class TimeScales:
    """Every time constant of the model, in days.

    ``step_days`` is the ODE solver's step, ``time_unit_days`` the unit its rates are per,
    ``horizon_days`` the training horizon; the feature windows are: ``level_days`` (recency
    weighting of a target's level), ``trend_days`` and ``trend_min_days`` (window of a target's
    trend and the shortest span it is computed over), ``recency_days`` (how fast the "last
    seen" feature fades), ``change_window_days`` (how far before a therapy change training
    places extra origins) and ``history_days`` (dose history that sets the exposure at the
    origin).
    """

    step_days: float = 7.0
    time_unit_days: float = 30.0
    horizon_days: float = 365.0
    level_days: float = 365.0
    trend_days: float = 730.0
    trend_min_days: float = 90.0
    recency_days: float = 180.0
    change_window_days: float = 180.0
    history_days: float = 120.0

    def __post_init__(self) -> None:
        for name, v in asdict(self).items():
            if not (isinstance(v, int | float) and math.isfinite(v) and v > 0):
                raise ConfigError(f"TimeScales.{name} must be a positive number of days, got {v!r}")
        if self.step_days > 31:
            raise ConfigError(f"TimeScales.step_days must be at most 31 days, got {self.step_days!r}")
        if self.time_unit_days < 2 * self.step_days:
            raise ConfigError(f"TimeScales.time_unit_days ({self.time_unit_days:g}) must be at least twice "
                              f"step_days ({self.step_days:g}): the fastest rates must stay stable at that step")
        if self.horizon_days < self.step_days:
            raise ConfigError(f"TimeScales.horizon_days ({self.horizon_days:g}) is shorter than one step "
                              f"({self.step_days:g} days)")

    @property
    def scale(self) -> float:
        """The feature windows relative to a one-year horizon (1 for chronic-disease cohorts)."""
        return self.horizon_days / 365.0


def derive_scales(cadence_days: float, *, step_days: float | None = None, time_unit_days: float | None = None,
                  horizon_days: float | None = None) -> TimeScales:
    """Time scales for a cohort whose target observations are ``cadence_days`` apart (median).

    ``step = clip(cadence / 4, 1, 7)``, ``unit = step x 30 / 7``, ``horizon = clip(12 x cadence,
    7, 365)``; the feature windows scale with the horizon (365 / 730 / 90 / 180 / 180 / 120 days
    for a one-year horizon). A chronic cohort with labs months apart gets 7 d / 30 d / 365 d;
    daily tumour measurements get 1 d / 4.3 d / 12 d. Any value given explicitly wins.
    """
    if not (math.isfinite(cadence_days) and cadence_days > 0):
        raise ConfigError(f"cannot derive time scales from a cadence of {cadence_days!r} days")
    step = step_days if step_days is not None else float(np.clip(cadence_days / 4.0, 1.0, 7.0))
    unit = time_unit_days if time_unit_days is not None else max(step * 30.0 / 7.0, 2 * step)
    horizon = horizon_days if horizon_days is not None else float(np.clip(round(12 * cadence_days), 7, 365))
    f = horizon / 365.0
    return TimeScales(step_days=step, time_unit_days=unit, horizon_days=horizon, level_days=365.0 * f,
                      trend_days=730.0 * f, trend_min_days=90.0 * f, recency_days=180.0 * f,
                      change_window_days=min(180.0 * f, horizon / 2), history_days=max(120.0 * f, 4 * unit))


@dataclass(frozen=True)
class CohortSpec:
    """Targets, treatment inputs, event kinds and time scales of a model (see the module docstring).

    Event kinds: ``death`` (from the Patient record), ``hospitalisation`` (inpatient encounters)
    and ``condition:<code>`` (the first onset of a condition with that code).
    """

    targets: tuple[Target, ...]
    treatments: tuple[Treatment, ...] = ()
    events: tuple[str, ...] = ()
    scales: TimeScales = field(default_factory=TimeScales)

    def __post_init__(self) -> None:
        if not self.targets:
            raise ConfigError("a cohort specification needs at least one target")
        for what, codes in (("target", [t.code for t in self.targets]),
                            ("treatment", [t.code for t in self.treatments]), ("event", list(self.events))):
            dup = sorted({c for c in codes if codes.count(c) > 1})
            if dup:
                raise ConfigError(f"{what} codes must be unique, repeated: {dup}")
        for e in self.events:
            if e not in ("death", "hospitalisation") and not (e.startswith("condition:") and len(e) > 10):
                raise ConfigError(f"unknown event kind {e!r} (use death, hospitalisation or condition:<code>)")

    def target(self, code: str) -> Target:
        for t in self.targets:
            if t.code == code:
                return t
        raise KeyError(code)

    def treatment(self, code: str) -> Treatment:
        for t in self.treatments:
            if t.code == code:
                return t
        raise KeyError(code)

    def to_dict(self) -> dict[str, Any]:
        return {"targets": [asdict(t) for t in self.targets], "treatments": [asdict(t) for t in self.treatments],
                "events": list(self.events), "scales": asdict(self.scales)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CohortSpec:
        return cls(targets=tuple(Target(**t) for t in d["targets"]),
                   treatments=tuple(Treatment(**t) for t in d.get("treatments", ())),
                   events=tuple(d.get("events", ())), scales=TimeScales(**d.get("scales", {})))

    def describe(self) -> str:
        """A few lines for people: what the model forecasts, from which inputs, on which scales."""
        s = self.scales
        tg = ", ".join(f"{t.name or t.code} [{t.code}] ({display_unit(t.unit) or 'no unit'}"
                       f"{'' if t.transform == 'identity' else ', ' + t.transform})" for t in self.targets)
        tr = ", ".join(f"{t.label}: {t.kind}, dose in {display_unit(t.unit) or 'counts'}, {t.effect} effect"
                       for t in self.treatments) or "none"
        return "\n".join([
            f"targets: {tg}",
            f"treatments: {tr}",
            f"events: {', '.join(self.events) or 'none'}",
            f"time scales: step {s.step_days:.3g} d, time unit {s.time_unit_days:.3g} d, horizon {s.horizon_days:.3g} d, "
            f"level window {s.level_days:.3g} d, trend window {s.trend_days:.3g} d",
        ])


@dataclass(frozen=True)
class SpecRequest:
    """What the user sets of a cohort specification; everything left ``None`` is derived.

    ``targets`` and ``treatments`` name codes or display names from the records;
    ``transforms`` maps a target code or name to a transform, ``effects`` a treatment code or
    name to an effect kind (:data:`EFFECTS`); the time values are days.
    """

    targets: tuple[str, ...] | None = None
    transforms: Mapping[str, str] = field(default_factory=dict)
    treatments: tuple[str, ...] | None = None
    effects: Mapping[str, str] = field(default_factory=dict)
    events: tuple[str, ...] | None = None
    step_days: float | None = None
    time_unit_days: float | None = None
    horizon_days: float | None = None

    def __post_init__(self) -> None:
        for name in ("targets", "treatments", "events"):
            v = getattr(self, name)
            if v is not None:
                if isinstance(v, str) or not all(isinstance(x, str) and x.strip() for x in v):
                    raise ConfigError(f"SpecRequest.{name} must be a list of codes or names, got {v!r}")
                object.__setattr__(self, name, tuple(x.strip() for x in cast(Sequence[str], v)))
        for k, t in self.transforms.items():
            if t not in TRANSFORMS:
                raise ConfigError(f"transform of {k!r} must be one of {', '.join(TRANSFORMS)}, got {t!r}")
        for k, e in self.effects.items():
            if e not in EFFECTS:
                raise ConfigError(f"effect of {k!r} must be one of {', '.join(EFFECTS)}, got {e!r}")
        for name in ("step_days", "time_unit_days", "horizon_days"):
            v = getattr(self, name)
            if v is not None and not (isinstance(v, int | float) and math.isfinite(v) and v > 0):
                raise ConfigError(f"SpecRequest.{name} must be a positive number of days, got {v!r}")
        object.__setattr__(self, "transforms", dict(self.transforms))
        object.__setattr__(self, "effects", dict(self.effects))

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> SpecRequest:
        return cls(**dict(d or {}))
