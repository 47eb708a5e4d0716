"""The outcome of a scenario run: sampled trajectories of every twin under every plan, and summaries.

Samples are *paired* across plans: sample ``s`` of every plan of one patient comes from the
same draw of the twin's uncertainty (same initial latent state / ensemble member), so a
difference between two plans is computed sample by sample and its interval reflects only the
uncertainty about the treatment effect, not the patient's unknown level shared by both.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core.errors import PlanError
from graph.units import lab_codes_named
from scenarios.guardrails import Flag

__all__ = ["Interval", "ScenarioResult", "Threshold", "find_lab", "first_crossing", "sample_quantiles"]

Interval = tuple[float, float, float]
"""``(median, 5 % quantile, 95 % quantile)`` (the quantile levels of the result)."""

_THRESHOLD = re.compile(r"^\s*(.+?)\s*(>=|<=|>|<)\s*(-?\d+(?:\.\d+)?)\s*$")
_OPS = {">": np.greater, ">=": np.greater_equal, "<": np.less, "<=": np.less_equal}


@dataclass(frozen=True, slots=True)
class Threshold:
    """``lab op value``, e.g. eGFR < 45: the time until it first holds is reported."""

    lab: str
    op: str
    value: float

    def __post_init__(self) -> None:
        if self.op not in _OPS:
            raise PlanError(f"threshold operator must be one of {', '.join(_OPS)}, got {self.op!r}")
        if not math.isfinite(self.value):
            raise PlanError(f"threshold value must be finite, got {self.value}")

    @classmethod
    def parse(cls, text: str) -> Threshold:
        """``"eGFR<45"`` or ``"HbA1c >= 7.5"`` → a threshold; :class:`PlanError` otherwise."""
        m = _THRESHOLD.match(text)
        if not m:
            raise PlanError(f"cannot read threshold {text!r}; write LAB OP VALUE, e.g. 'eGFR < 45'")
        return cls(m.group(1).strip(), m.group(2), float(m.group(3)))

    def holds(self, x: np.ndarray) -> np.ndarray:
        return _OPS[self.op](x, self.value)

    def __str__(self) -> str:
        return f"{self.lab} {self.op} {self.value:g}"


def sample_quantiles(x: np.ndarray, quantiles: Sequence[float], axis: int = 0) -> np.ndarray:
    """``np.quantile(x, quantiles, axis=axis)`` (linear interpolation) from one sort along
    ``axis``: several times faster than ``np.quantile`` on a strided sample axis, where it
    partitions once per quantile."""
    x = np.asarray(x)
    if x.shape[axis] == 0 or np.isnan(x).any():
        return np.quantile(x, quantiles, axis=axis)
    s = np.sort(x, axis=axis)
    n = s.shape[axis]
    out = []
    for q in quantiles:
        pos = float(q) * (n - 1)
        lo = int(np.floor(pos))
        hi, frac = min(lo + 1, n - 1), pos - lo
        a, b = np.take(s, lo, axis=axis), np.take(s, hi, axis=axis)
        out.append(a + (b - a) * frac if frac else a)
    return np.stack(out)


def find_lab(labs: list[str], names: dict[str, str], lab: str) -> int:
    """Index in ``labs`` of ``lab``: a code, a display name (``names``), a common alias
    (``HbA1c``, ``eGFR``) or a unique part of a name; :class:`PlanError` listing them otherwise."""
    key = lab.strip()
    if key in labs:
        return labs.index(key)
    low = key.lower()
    for i, c in enumerate(labs):
        if names.get(c, "").lower() == low:
            return i
    for code in lab_codes_named(low):
        if code in labs:
            return labs.index(code)
    hits = [i for i, c in enumerate(labs) if low and low in names.get(c, "").lower()]
    if len(hits) == 1:
        return hits[0]
    known = ", ".join(f"{c} ({names.get(c, c)})" for c in labs)
    raise PlanError(f"lab {lab!r} is not forecast by this model (forecast labs: {known})")


def first_crossing(traj: np.ndarray, times: np.ndarray, threshold: Threshold) -> np.ndarray:
    """First of ``times`` (last axis of ``traj``) on which ``threshold`` holds; ``inf``: never."""
    hit = threshold.holds(traj)
    return np.where(hit.any(axis=-1), times[np.argmax(hit, axis=-1)], np.inf)


@dataclass
class ScenarioResult:
    """All twins × plans of one batched solve.

    Shapes: ``lab_samples`` ``[S, N, P, T, L]`` (lab values in their units), ``risk_samples``
    ``[S, N, P, T, E]`` (cumulative probability of each event by each time), with S samples,
    N patients, P plans, T query times (``times``, days from each patient's origin), L labs,
    E event kinds.

    A summarised result (``simulate(..., sample_days=...)``) keeps samples only on
    ``sample_times`` (T = their count above) and holds every query day as quantile ``bands``
    (``median``/``lo``/``hi`` ``[N, P, times, L]``, ``risk_median``/``risk_lo``/``risk_hi``
    ``[N, P, times, E]``) and each threshold's first-crossing days ``crossings``
    ``[thresholds, S, N, P]``, computed from the full trajectories before they were dropped.
    """

    patients: list[str]
    plans: list[str]
    reference: str
    times: np.ndarray
    labs: list[str]
    lab_samples: np.ndarray
    events: list[str] = field(default_factory=list)
    risk_samples: np.ndarray | None = None
    lab_names: dict[str, str] = field(default_factory=dict)
    lab_units: dict[str, str] = field(default_factory=dict)
    thresholds: list[Threshold] = field(default_factory=list)
    flags: list[Flag] = field(default_factory=list)
    quantiles: tuple[float, float] = (0.05, 0.95)
    seed: int = 0
    horizon_days: float = 0.0
    sample_times: np.ndarray | None = None
    bands: dict[str, np.ndarray] | None = None
    crossings: np.ndarray | None = None
    #: Ensemble members the samples come from: sample ``s`` is member ``s mod members``'s
    #: (1: unknown or one member). :func:`scenarios.rank.rank` reads the members' disagreement from it.
    members: int = 1

    def __post_init__(self) -> None:
        S, N, P, T, L = self.lab_samples.shape
        if self.members < 1:
            raise ValueError(f"members must be >= 1, got {self.members}")
        kept = self.times if self.sample_times is None else self.sample_times
        if (N, P, T, L) != (len(self.patients), len(self.plans), len(kept), len(self.labs)):
            raise ValueError(f"lab_samples shape {self.lab_samples.shape} does not match "
                             f"patients×plans×sample times×labs = {N}×{P}×{len(kept)}×{L}")
        if (self.sample_times is None) != (self.bands is None):
            raise ValueError("a result with samples on some days only needs bands for every day, and vice versa")
        if self.reference not in self.plans:
            raise ValueError(f"reference plan {self.reference!r} is not among the plans {self.plans}")

    # ----------------------------------------------------------------- lookups
    @property
    def n_samples(self) -> int:
        return int(self.lab_samples.shape[0])

    @property
    def summarised(self) -> bool:
        """Whether samples were kept on ``sample_times`` only (see the class docstring)."""
        return self.sample_times is not None

    def patient_index(self, patient: str | int | None) -> int:
        if patient is None:
            if len(self.patients) != 1:
                raise PlanError(f"the result holds {len(self.patients)} patients; name one")
            return 0
        if isinstance(patient, int):
            return patient
        try:
            return self.patients.index(patient)
        except ValueError:
            raise PlanError(f"patient {patient!r} is not in this result") from None

    def plan_index(self, plan: str | int) -> int:
        if isinstance(plan, int):
            return plan
        try:
            return self.plans.index(plan)
        except ValueError:
            raise PlanError(f"plan {plan!r} is not in this result (plans: {', '.join(self.plans)})") from None

    def lab_index(self, lab: str) -> int:
        """Index of ``lab``: a code, a display name, or a common alias (``HbA1c``, ``eGFR``)."""
        return find_lab(self.labs, self.lab_names, lab)

    def event_index(self, event: str) -> int:
        key = event.strip().lower().removeprefix("risk:").replace("hospitalization", "hospitalisation")
        if key in self.events:
            return self.events.index(key)
        raise PlanError(f"event {event!r} is not modelled (events: {', '.join(self.events) or 'none'})")

    def time_index(self, day: float) -> int:
        """Index of the query time closest to ``day``."""
        if day < 0 or day > self.times[-1] + 1e-9:
            raise PlanError(f"day {day:g} is outside the simulated horizon 0–{self.times[-1]:g}")
        return int(np.argmin(np.abs(self.times - day)))

    def sample_index(self, day: float) -> int:
        """Index in the samples of the query time closest to ``day`` (a kept day when summarised)."""
        i = self.time_index(day)
        if self.sample_times is None:
            return i
        hit = np.flatnonzero(np.abs(self.sample_times - self.times[i]) < 1e-6)
        if not hit.size:
            kept = ", ".join(f"{t:g}" for t in self.sample_times)
            raise PlanError(f"samples of this run were kept on days {kept} only, not day {day:g}; "
                            "simulate again with that day among the sample days")
        return int(hit[0])

    def full_samples(self, what: str) -> None:
        """Raise :class:`PlanError` when ``what`` needs every sample on every day and this
        result kept them on some days only."""
        if self.summarised:
            raise PlanError(f"{what} needs every sample on every query day; this run kept samples on "
                            "some days only (simulate without sample_days)")

    # ----------------------------------------------------------------- samples
    def lab_at(self, lab: str, day: float, patient: str | int | None = None) -> np.ndarray:
        """Samples ``[S, P]`` of ``lab`` on ``day``."""
        return self.lab_samples[:, self.patient_index(patient), :, self.sample_index(day), self.lab_index(lab)]

    def risk_at(self, event: str, day: float, patient: str | int | None = None) -> np.ndarray:
        """Samples ``[S, P]`` of the cumulative risk of ``event`` by ``day``."""
        if self.risk_samples is None:
            raise PlanError("this result holds no event risks (the model has no event hazards)")
        return self.risk_samples[:, self.patient_index(patient), :, self.sample_index(day), self.event_index(event)]

    def crossing_days(self, threshold: Threshold, patient: str | int | None = None) -> np.ndarray:
        """Samples ``[S, P]`` of the first query day on which ``threshold`` holds (``inf``: never)."""
        pi = self.patient_index(patient)
        if self.crossings is not None and threshold in self.thresholds:
            return self.crossings[self.thresholds.index(threshold), :, pi]
        self.full_samples(f"the crossing of {threshold}")
        return first_crossing(self.lab_samples[:, pi, :, :, self.lab_index(threshold.lab)], self.times, threshold)

    def summarise(self, x: np.ndarray, axis: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Median and the lower/upper quantiles of samples along ``axis``."""
        lo, hi = self.quantiles
        q = sample_quantiles(x, [0.5, lo, hi], axis=axis)
        return q[0], q[1], q[2]

    def trajectory(self, plan: str | int, lab: str, patient: str | int | None = None) -> dict[str, np.ndarray]:
        """``{times, median, lo, hi}`` of ``lab`` under ``plan``."""
        pi, p, j = self.patient_index(patient), self.plan_index(plan), self.lab_index(lab)
        if self.bands is not None:
            return {"times": self.times, "median": self.bands["median"][pi, p, :, j], "lo": self.bands["lo"][pi, p, :, j],
                    "hi": self.bands["hi"][pi, p, :, j]}
        med, lo, hi = self.summarise(self.lab_samples[:, pi, p, :, j])
        return {"times": self.times, "median": med, "lo": lo, "hi": hi}

    def difference(self, plan: str | int, lab: str, day: float, patient: str | int | None = None,
                   reference: str | None = None) -> Interval:
        """Paired difference ``plan − reference`` of ``lab`` on ``day``: (median, lo, hi)."""
        x = self.lab_at(lab, day, patient)
        d = x[:, self.plan_index(plan)] - x[:, self.plan_index(reference or self.reference)]
        med, lo, hi = self.summarise(d)
        return float(med), float(lo), float(hi)

    # ----------------------------------------------------------------- report
    def summary(self, patient: str | int | None = None, days: tuple[float, ...] | None = None) -> list[dict[str, Any]]:
        """One JSON-ready row per plan: labs at ``days`` (default: horizon), differences to the
        reference, event risks at the horizon, time to each threshold, and the plan's flags."""
        pi = self.patient_index(patient)
        days = days or (float(self.times[-1]),)
        rows: list[dict[str, Any]] = []
        for p, name in enumerate(self.plans):
            row: dict[str, Any] = {"plan": name, "reference": name == self.reference, "labs": {}, "events": {},
                                   "thresholds": {}, "flags": [f.to_dict() for f in self.flags if f.plan == name]}
            for lab in self.labs:
                per_day = {}
                for d in days:
                    x = self.lab_at(lab, d, pi)
                    med, lo, hi = self.summarise(x[:, p])
                    dm, dl, dh = self.difference(p, lab, d, pi)
                    per_day[f"{d:g}"] = {"median": float(med), "lo": float(lo), "hi": float(hi),
                                         "diff_vs_reference": {"median": dm, "lo": dl, "hi": dh}}
                row["labs"][lab] = {"name": self.lab_names.get(lab, lab), "unit": self.lab_units.get(lab, ""),
                                    "at_day": per_day}
            for e in self.events:
                r = self.risk_at(e, float(self.times[-1]), pi)
                med, lo, hi = self.summarise(r[:, p])
                dmed, dlo, dhi = self.summarise(r[:, p] - r[:, self.plan_index(self.reference)])
                row["events"][e] = {"risk_at_horizon": {"median": float(med), "lo": float(lo), "hi": float(hi)},
                                    "diff_vs_reference": {"median": float(dmed), "lo": float(dlo), "hi": float(dhi)}}
            for th in self.thresholds:
                c = self.crossing_days(th, pi)[:, p]
                crossed = np.isfinite(c)
                # "never" counts as later than the horizon: a quantile beyond it reads as None
                beyond = float(self.times[-1]) + 1.0
                q = self.summarise(np.where(crossed, c, beyond))
                c_med, c_lo, c_hi = (None if v >= beyond else float(v) for v in q)
                row["thresholds"][str(th)] = {"p_within_horizon": float(crossed.mean()),
                                              "median_days": c_med, "lo_days": c_lo, "hi_days": c_hi}
            rows.append(row)
        return rows

    def to_dict(self, days: tuple[float, ...] | None = None) -> dict[str, Any]:
        """JSON-ready result: metadata and a per-patient list of plan summaries."""
        return {
            "plans": self.plans, "reference": self.reference, "horizon_days": self.horizon_days,
            "n_samples": self.n_samples, "seed": self.seed, "quantiles": list(self.quantiles),
            "labs": {c: {"name": self.lab_names.get(c, c), "unit": self.lab_units.get(c, "")} for c in self.labs},
            "events": self.events, "flags": [f.to_dict() for f in self.flags],
            "patients": [{"patient_id": pid, "plans": self.summary(i, days)} for i, pid in enumerate(self.patients)],
        }

