"""The ground-truth oracle: replay any patient from any day under any treatment plan.

The replay integrates the same hidden model from day 0 with the same parameters and the same
disturbance innovations (per-patient seed), applying the factual treatment history up to the
origin and the plan after it; so the state at the origin is exactly the recorded one and any
difference afterwards is caused by the plan alone (a true counterfactual).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np

from core.errors import TwinError
from synthetic.drugs import DRUG_INDEX, DRUGS, drug_by_code
from synthetic.physiology import (
    LABS,
    Params,
    egfr_from_creatinine,
    hazards,
    initial_state,
    innovations,
    observe,
    response,
    step,
)
from synthetic.records import measure
from synthetic.truth import PatientTruth

__all__ = ["Action", "Plan", "SimulationResult", "simulate"]


@dataclass(frozen=True, slots=True)
class Action:
    """Give ``dose`` mg/day of ``drug`` (RxNorm code) on days ``start_day <= d < stop_day`` after the origin.

    ``stop_day=None`` keeps it going to the horizon; ``dose=0`` withholds the drug.
    """

    drug: str
    dose: float
    start_day: int = 0
    stop_day: int | None = None

    def __post_init__(self) -> None:
        drug_by_code(self.drug)
        if not np.isfinite(self.dose) or self.dose < 0:
            raise TwinError(f"Action {self.drug}: dose must be a finite number >= 0 mg/day, got {self.dose!r}")
        if self.start_day < 0 or (self.stop_day is not None and self.stop_day < self.start_day):
            raise TwinError(
                f"Action {self.drug}: need 0 <= start_day <= stop_day, got {self.start_day}..{self.stop_day}")


@dataclass(frozen=True, slots=True)
class Plan:
    """A treatment plan relative to the simulation origin.

    Before the origin the factual history always applies. After it, with ``continue_factual``
    the recorded prescriptions go on (including the ones recorded later than the origin),
    except that a drug named by an action is under the plan's control from that drug's first
    action ``start_day`` on; without ``continue_factual`` every factual drug stops at the
    origin. Doses of overlapping actions of one drug add up.
    """

    actions: tuple[Action, ...] = ()
    continue_factual: bool = True
    name: str = ""

    @classmethod
    def factual(cls) -> Plan:
        return cls((), True, "factual")

    @classmethod
    def untreated(cls) -> Plan:
        return cls((), False, "untreated")


@dataclass(frozen=True)
class SimulationResult:
    """True futures of ``n`` (patient, plan) pairs on days ``origin + days``.

    ``labs`` maps LOINC code -> ``(n, len(days))`` noise-free values; ``noisy`` the same with
    measurement noise (when asked); ``hazards`` maps event kind -> daily hazard and
    ``survival`` event kind -> probability of no event since the origin; ``hidden`` holds
    latent quantities (``egfr_struct``).
    """

    days: np.ndarray
    origin: np.ndarray
    labs: dict[str, np.ndarray]
    hazards: dict[str, np.ndarray]
    survival: dict[str, np.ndarray]
    hidden: dict[str, np.ndarray]
    noisy: dict[str, np.ndarray] | None = None
    plan_names: list[str] = field(default_factory=list)


def _segments(truth: PatientTruth, plan: Plan, origin: int) -> list[tuple[int, float, int, float]]:
    """Absolute-day dose segments ``(drug column, dose, start, stop)`` of one pair."""
    first_action: dict[str, int] = {}
    for a in plan.actions:
        first_action[a.drug] = min(first_action.get(a.drug, a.start_day), a.start_day)
    out: list[tuple[int, float, int, float]] = []
    for seg in truth.treatments:
        code = str(seg["drug"])
        if code not in DRUG_INDEX:
            raise TwinError(f"truth of patient {truth.patient_id}: unknown drug {code!r} in treatments")
        stop = seg.get("stop_day")
        # a prescription closed only because the patient died goes on in a replay
        stop_f = np.inf if stop is None or seg.get("stop_reason") == "death" else float(stop)
        if not plan.continue_factual:
            stop_f = min(stop_f, float(origin))
        elif code in first_action:
            stop_f = min(stop_f, float(origin + first_action[code]))
        if int(seg["start_day"]) < stop_f:
            out.append((DRUG_INDEX[code], float(seg["dose"]), int(seg["start_day"]), stop_f))
    for a in plan.actions:
        stop_a = np.inf if a.stop_day is None else float(origin + a.stop_day)
        if a.dose > 0 and origin + a.start_day < stop_a:
            out.append((DRUG_INDEX[a.drug], float(a.dose), origin + a.start_day, stop_a))
    return out


_T = TypeVar("_T")


def _broadcast(name: str, seq: Sequence[_T], n: int) -> Sequence[_T]:
    """``seq`` itself when it has ``n`` entries, its single entry repeated ``n`` times when it has one."""
    if len(seq) == n:
        return seq
    if len(seq) == 1:
        return list(seq) * n
    raise TwinError(f"simulate: {name} has {len(seq)} entries, expected 1 or {n} (one per pair)")


def simulate(
    patients: PatientTruth | Sequence[PatientTruth],
    plans: Plan | Sequence[Plan],
    horizon_days: int,
    *,
    origin: int | Sequence[int] | None = None,
    noise: bool = False,
    seed: int | None = None,
    every: int = 1,
    future_disturbances: bool = True,
) -> SimulationResult:
    """Replay (patient, plan) pairs from ``origin`` for ``horizon_days`` days, all in one batch.

    Args:
        patients: one truth or a sequence; broadcast against ``plans`` (1 or n each).
        plans: one plan or a sequence.
        horizon_days: days after the origin to return (``horizon_days + 1`` points incl. the origin).
        origin: day from the follow-up start (per pair or one for all; default 0).
        noise: also return noisy measurements (the generator's noise model) in ``noisy``.
        seed: seed of the measurement noise.
        every: return every ``every``-th day only.
        future_disturbances: with False, the disturbance innovations from the origin on are
            zero, so ``uA``/``uS`` decay from their values at the origin: the forecast of
            someone who knows the patient's parameters and state at the origin but not the
            disturbances still to come (the floor of any forecaster's error).

    Raises:
        TwinError: unknown drug, bad horizon/origin, mismatched sequence lengths.
    """
    pats = [patients] if isinstance(patients, PatientTruth) else list(patients)
    pls = [plans] if isinstance(plans, Plan) else list(plans)
    n = max(len(pats), len(pls))
    if n == 0:
        raise TwinError("simulate: no (patient, plan) pairs given")
    pats = list(_broadcast("patients", pats, n))
    pls = list(_broadcast("plans", pls, n))
    if horizon_days < 0 or every < 1:
        raise TwinError(f"simulate: need horizon_days >= 0 and every >= 1, got {horizon_days}, {every}")
    if origin is None:
        origins = np.zeros(n, dtype=np.int64)
    elif isinstance(origin, (int, np.integer)):
        origins = np.full(n, int(origin), dtype=np.int64)
    else:
        origins = np.asarray(list(_broadcast("origin", list(origin), n)), dtype=np.int64)
    if (origins < 0).any():
        raise TwinError("simulate: origin must be >= 0 (days from the follow-up start)")

    params = Params.from_rows([p.params for p in pats])
    segs = [_segments(p, pl, int(o)) for p, pl, o in zip(pats, pls, origins, strict=True)]
    k = max(1, max(len(s) for s in segs))
    s_drug = np.zeros((n, k, len(DRUGS)))
    s_dose, s_start, s_stop = np.zeros((n, k)), np.zeros((n, k)), np.zeros((n, k))
    for i, ss in enumerate(segs):
        for j, (d, dose, a, b) in enumerate(ss):
            s_drug[i, j, d], s_dose[i, j], s_start[i, j], s_stop[i, j] = 1.0, dose, a, b

    out_days = np.arange(0, horizon_days + 1, every)
    last = int(origins.max()) + horizon_days
    eps = innovations(np.array([p.noise_seed for p in pats]), last + 1)
    if not future_disturbances:
        eps[np.arange(last + 1)[None, :] >= origins[:, None]] = 0.0
    keys = list(LABS)
    labs = {k_: np.full((n, len(out_days)), np.nan) for k_ in keys}
    hidden = {"egfr_struct": np.full((n, len(out_days)), np.nan)}
    haz = {k_: np.full((n, horizon_days + 1), np.nan) for k_ in ("hospitalisation", "death")}
    x = initial_state(params)
    rows = np.arange(n)
    for day in range(last + 1):
        rel = day - origins
        in_window = (rel >= 0) & (rel <= horizon_days)
        h = response(params, x)
        if in_window.any():
            obs = observe(params, x, day, h)
            hz = hazards(params, obs, day)
            for k_, arr in hz.items():
                haz[k_][rows[in_window], rel[in_window]] = arr[in_window]
            keep = in_window & (rel % every == 0)
            if keep.any():
                col = rel[keep] // every
                for k_ in keys:
                    labs[k_][rows[keep], col] = obs[k_][keep]
                hidden["egfr_struct"][rows[keep], col] = obs["egfr_struct"][keep]
        if day == last:
            break
        active = (s_start <= day) & (day < s_stop)
        dose = np.matmul((active * s_dose)[:, None, :], s_drug)[:, 0, :]
        x = step(params, x, day, dose, eps[:, day], h)

    # cumulative hazard over [origin, origin + t): survival at each returned day
    cum = {k_: np.concatenate([np.zeros((n, 1)), np.cumsum(v[:, :-1], axis=1)], axis=1) for k_, v in haz.items()}
    survival = {k_: np.exp(-v)[:, out_days] for k_, v in cum.items()}
    noisy = None
    if noise:
        rng = np.random.default_rng(seed)
        noisy = {LABS[k_].code: measure(k_, v, rng) for k_, v in labs.items() if k_ != "egfr"}
        age = params.age0[:, None] + (origins[:, None] + out_days[None, :]) / 365.0
        noisy[LABS["egfr"].code] = np.round(
            egfr_from_creatinine(noisy[LABS["creatinine"].code], age, params.female[:, None]), 0)
    return SimulationResult(
        days=out_days, origin=origins, labs={LABS[k_].code: v for k_, v in labs.items()},
        hazards={k_: v[:, out_days] for k_, v in haz.items()}, survival=survival, hidden=hidden, noisy=noisy,
        plan_names=[pl.name for pl in pls],
    )
