"""The record process: visits, measurements, diagnoses, prescribing decisions and events.

Everything the clinician "sees" comes from noisy OBSERVED values; everything that happens to
the patient (progression, hospitalisations, death) comes from the hidden state. One pass over
the daily grid advances every patient at once (:func:`run_records`):

1. hospitalisation and death are drawn from the daily hazards of the hidden state;
2. patients with a visit today (outpatient, or an admission) get vitals and, by panel, labs
   (measurement noise, missing values), new diagnoses when an observed value crosses a
   threshold, an imaging study now and then, and prescribing decisions;
3. the physiology steps one day under the current doses.

Prescribing is a per-visit draw from a hazard ``base · exp(confounding · 2 · z)`` accumulated
over the days since the last visit, where ``z`` is the standardised distance of the last
OBSERVED marker from the decision threshold. ``confounding = 0`` makes treatment timing a
state-independent Poisson process; ``confounding = 1`` makes it strongly state-driven.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from synthetic.drugs import DRUGS
from synthetic.images import render_kidney
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

__all__ = ["CONDITIONS", "PROCEDURES", "RULES", "PatientRecord", "RecordOptions", "Rule", "measure", "run_records"]

#: Diagnoses: key -> (SNOMED CT code, display).
CONDITIONS: dict[str, tuple[str, str]] = {
    "prediabetes": ("15777000", "Prediabetes"),
    "diabetes": ("44054006", "Diabetes mellitus type 2 (disorder)"),
    "hypertension": ("38341003", "Hypertensive disorder, systemic arterial (disorder)"),
    "hyperlipidaemia": ("55822004", "Hyperlipidemia (disorder)"),
    "ckd3": ("433144002", "Chronic kidney disease stage 3 (disorder)"),
    "ckd4": ("431857002", "Chronic kidney disease stage 4 (disorder)"),
    "ckd5": ("433146000", "Chronic kidney disease stage 5 (disorder)"),
    "hyperkalaemia": ("14140009", "Hyperkalemia (disorder)"),
    "mi": ("22298006", "Myocardial infarction (disorder)"),
    "stroke": ("230690007", "Cerebrovascular accident (disorder)"),
    "heart_failure": ("84114007", "Heart failure (disorder)"),
}
#: Procedures: key -> (SNOMED CT code, display).
PROCEDURES: dict[str, tuple[str, str]] = {
    "dialysis": ("265764009", "Renal dialysis (procedure)"),
    "echo": ("40701008", "Echocardiography (procedure)"),
    "ecg": ("29303009", "Electrocardiographic procedure"),
}
#: Indication recorded as ``reasonReference`` of each drug's prescriptions.
INDICATION = {"metformin": "diabetes", "empagliflozin": "diabetes", "lisinopril": "hypertension",
              "amlodipine": "hypertension", "atorvastatin": "hyperlipidaemia"}
_HOSP_CAUSES = ("mi", "stroke", "heart_failure")
_PANELS = {"glycaemic": ("hba1c", "glucose"), "renal": ("creatinine", "egfr", "potassium", "glucose"),
           "lipid": ("ldl",)}


@dataclass(frozen=True, slots=True)
class Rule:
    """A prescribing rule: ``action`` on ``drug`` driven by observed ``marker`` vs ``threshold``.

    ``z = sign · (observed - threshold) / scale`` (``-2`` while the marker was never observed,
    ``0`` for rules without a marker); the daily hazard is ``base_per_year / 365 · exp(confounding · 2 · z)``.
    """

    drug: str
    action: str
    marker: str | None
    threshold: float
    scale: float
    sign: float
    base_per_year: float


RULES: tuple[Rule, ...] = (
    Rule("metformin", "stop", "egfr", 30.0, 5.0, -1.0, 0.05),
    Rule("metformin", "titrate", "hba1c", 7.0, 0.5, 1.0, 0.5),
    Rule("metformin", "start", "hba1c", 6.5, 0.5, 1.0, 0.15),
    Rule("empagliflozin", "stop", "egfr", 20.0, 5.0, -1.0, 0.05),
    Rule("empagliflozin", "titrate", "hba1c", 7.5, 0.5, 1.0, 0.3),
    Rule("empagliflozin", "start", "hba1c", 7.5, 0.5, 1.0, 0.06),
    Rule("lisinopril", "stop", "potassium", 5.5, 0.3, 1.0, 0.05),
    Rule("lisinopril", "titrate", "sbp", 135.0, 10.0, 1.0, 0.5),
    Rule("lisinopril", "start", "sbp", 140.0, 10.0, 1.0, 0.15),
    Rule("amlodipine", "stop", None, 0.0, 1.0, 1.0, 0.05),
    Rule("amlodipine", "titrate", "sbp", 140.0, 10.0, 1.0, 0.3),
    Rule("amlodipine", "start", "sbp", 150.0, 10.0, 1.0, 0.06),
    Rule("atorvastatin", "stop", None, 0.0, 1.0, 1.0, 0.05),
    Rule("atorvastatin", "titrate", "ldl", 100.0, 25.0, 1.0, 0.5),
    Rule("atorvastatin", "start", "ldl", 160.0, 25.0, 1.0, 0.15),
)
_DRUG_POS = {d.key: i for i, d in enumerate(DRUGS)}


@dataclass(frozen=True, slots=True)
class RecordOptions:
    """Knobs of the record process (validated by :class:`synthetic.cohort.SynthConfig`)."""

    days: int
    confounding: float
    has_images: np.ndarray
    has_genomics: np.ndarray
    truth_every: int = 7


@dataclass(slots=True)
class PatientRecord:
    """Everything generated for one patient, in day units relative to the follow-up start."""

    index: int
    visits: list[dict[str, Any]] = field(default_factory=list)
    observations: list[dict[str, Any]] = field(default_factory=list)
    conditions: list[dict[str, Any]] = field(default_factory=list)
    segments: list[dict[str, Any]] = field(default_factory=list)
    procedures: list[dict[str, Any]] = field(default_factory=list)
    images: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    death_day: int | None = None
    end_day: int = 0

    def active_condition(self, key: str) -> dict[str, Any] | None:
        for c in self.conditions:
            if c["key"] == key and c["abatement_day"] is None:
                return c
        return None


def measure(key: str, true: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Noisy measurement of ``true`` values of quantity ``key`` (rounded as reported)."""
    spec = LABS[key]
    z = rng.standard_normal(np.shape(true))
    val = np.asarray(true) + spec.noise_sd * z + spec.noise_cv * np.asarray(true) * z
    return np.round(np.maximum(val, 0.0), spec.decimals)


class _Clinic:
    """Mutable per-patient bookkeeping of the record process (observed values, doses, plans)."""

    def __init__(self, params: Params, opts: RecordOptions, rng: np.random.Generator, lesion_angle: np.ndarray) -> None:
        n = len(params)
        self.params = params
        self.opts = opts
        self.rng = rng
        self.records = [PatientRecord(index=i) for i in range(n)]
        self.last_obs: list[dict[str, float]] = [{} for _ in range(n)]
        self.last_visit = np.full(n, -90, dtype=np.int64)
        self.last_image = np.full(n, -10_000, dtype=np.int64)
        self.last_hosp = np.full(n, -10_000, dtype=np.int64)
        self.dose = np.zeros((n, len(DRUGS)))
        self.open_seg: list[dict[int, dict[str, Any]]] = [{} for _ in range(n)]
        self.lesion_angle = lesion_angle

    # ------------------------------------------------------------------ a visit
    def visit(self, i: int, day: int, kind: str, obs: dict[str, float], end_day: int, cause: str | None) -> int:
        """Record one encounter of patient ``i``; returns the number of sickness points seen."""
        rec, rng = self.records[i], self.rng
        v = len(rec.visits)
        rec.visits.append({"day": day, "end_day": end_day, "kind": kind, "cause": cause})
        measured = self._measure(i, v, day, kind, obs)
        self._diagnose(i, v, day, measured, cause)
        if kind == "IMP":
            rec.procedures.append({"key": "ecg", "day": day, "visit": v})
            if cause in ("mi", "heart_failure"):
                rec.procedures.append({"key": "echo", "day": day, "visit": v})
        if rec.active_condition("ckd5") is not None:
            rec.procedures.append({"key": "dialysis", "day": day, "visit": v})
        if self.opts.has_images[i]:
            ckd = rec.active_condition("ckd3") or rec.active_condition("ckd4") or rec.active_condition("ckd5")
            gap = day - self.last_image[i]
            if gap >= 365 or (ckd is not None and gap >= 180):
                arr = render_kidney(obs["egfr_struct"], obs["hba1c"], float(self.lesion_angle[i]), rng)
                rec.images.append({"day": day, "visit": v, "array": arr, "egfr_struct": obs["egfr_struct"]})
                self.last_image[i] = day
        changed = self._decide(i, v, day)
        self.last_visit[i] = day
        lo = self.last_obs[i]
        sick = (int(lo.get("hba1c", 0.0) > 8.0) + int(lo.get("sbp", 0.0) > 160.0) + int(lo.get("egfr", 99.0) < 45.0)
                + int(lo.get("ldl", 0.0) > 190.0) + int(lo.get("potassium", 0.0) > 5.5) + int(changed)
                + int(day - self.last_hosp[i] < 60))
        return sick

    def _measure(self, i: int, v: int, day: int, kind: str, obs: dict[str, float]) -> dict[str, float]:
        rec, rng, lo = self.records[i], self.rng, self.last_obs[i]
        first = v == 0
        diab = rec.active_condition("diabetes") is not None or self.dose[i, 0] > 0 or self.dose[i, 1] > 0
        p = {"glycaemic": 0.85 if diab else 0.45, "renal": 0.75, "lipid": 0.7 if self.dose[i, 4] > 0 else 0.4}
        if kind == "IMP" or first:
            p = {k: 0.95 for k in p}
        keys: list[str] = ["sbp", "dbp"]
        for panel, prob in p.items():
            if rng.random() < prob:
                keys.extend(k for k in _PANELS[panel] if k not in keys)
        out: dict[str, float] = {}
        for key in keys:
            if key == "egfr":  # reported by the lab from the measured creatinine
                if "creatinine" not in out:
                    continue
                age = self.params.age0[i] + day / 365.0
                val = float(np.round(egfr_from_creatinine(np.array(out["creatinine"]), np.array(age),
                                                          np.array(self.params.female[i])), 0))
            elif key not in ("sbp", "dbp") and rng.random() < 0.05:  # one result missing from a drawn panel
                continue
            else:
                val = float(measure(key, np.array(obs[key]), rng))
            out[key] = val
            rec.observations.append({"visit": v, "day": day, "key": key, "value": val, "true": float(obs[key])})
        lo.update(out)
        return out

    def _diagnose(self, i: int, v: int, day: int, m: dict[str, float], cause: str | None) -> None:
        rec = self.records[i]

        def add(key: str) -> None:
            if rec.active_condition(key) is None and not (key == "hyperkalaemia" and any(
                    c["key"] == key and day - c["onset_day"] < 180 for c in rec.conditions)):
                rec.conditions.append({"key": key, "onset_day": day, "visit": v, "abatement_day": None})

        def abate(key: str) -> None:
            c = rec.active_condition(key)
            if c is not None:
                c["abatement_day"] = day

        if "hba1c" in m:
            if m["hba1c"] >= 6.5:
                abate("prediabetes")
                add("diabetes")
            elif m["hba1c"] >= 5.7 and rec.active_condition("diabetes") is None:
                add("prediabetes")
        if m.get("sbp", 0.0) >= 140.0:
            add("hypertension")
        if m.get("ldl", 0.0) >= 160.0:
            add("hyperlipidaemia")
        if "egfr" in m:
            g = m["egfr"]
            stage = "ckd5" if g < 15 else "ckd4" if g < 30 else "ckd3" if g < 60 else None
            order = ("ckd3", "ckd4", "ckd5")
            have = [k for k in order if rec.active_condition(k) is not None]
            if stage is not None and (not have or order.index(stage) > order.index(have[-1])):
                for k in have:
                    abate(k)
                add(stage)
        if m.get("potassium", 0.0) >= 5.5:
            add("hyperkalaemia")
        if cause is not None:
            rec.conditions.append({"key": cause, "onset_day": day, "visit": v, "abatement_day": None})
            rec.events.append({"day": day, "kind": "hospitalisation", "cause": cause})

    def _decide(self, i: int, v: int, day: int) -> bool:
        """Apply the prescribing rules; one change per drug per visit. Returns whether anything changed."""
        rng, lo = self.rng, self.last_obs[i]
        dt = max(1, day - int(self.last_visit[i]))
        changed = False
        done: set[str] = set()
        for rule in RULES:
            if rule.drug in done:
                continue
            d = _DRUG_POS[rule.drug]
            on = self.dose[i, d] > 0
            if (rule.action == "start") == on:
                continue
            levels = DRUGS[d].doses
            if rule.action == "titrate" and self.dose[i, d] >= levels[-1]:
                continue
            if rule.marker is None:
                z = 0.0
            elif rule.marker in lo:
                z = rule.sign * (lo[rule.marker] - rule.threshold) / rule.scale
            else:
                z = -2.0
            rate = rule.base_per_year / 365.0 * np.exp(self.opts.confounding * 2.0 * np.clip(z, -3.0, 3.0))
            if rng.random() >= 1.0 - np.exp(-rate * dt):
                continue
            done.add(rule.drug)
            changed = True
            if rule.action == "start":
                new = levels[0]
            elif rule.action == "titrate":
                new = next(x for x in levels if x > self.dose[i, d])
            else:
                new = 0.0
            self.set_dose(i, d, new, day, v, rule.action)
        return changed

    def set_dose(self, i: int, d: int, dose: float, day: int, v: int | None, why: str) -> None:
        """Change drug ``d`` of patient ``i`` to ``dose`` from ``day`` on (closing the open segment)."""
        seg = self.open_seg[i].pop(d, None)
        if seg is not None:
            seg["stop_day"] = day
            seg["stop_reason"] = why
        if dose > 0:
            seg = {"drug": DRUGS[d].code, "dose": float(dose), "start_day": day, "stop_day": None,
                   "stop_reason": None, "visit": v, "reason": INDICATION[DRUGS[d].key]}
            self.records[i].segments.append(seg)
            self.open_seg[i][d] = seg
        self.dose[i, d] = dose


def run_records(params: Params, noise_seeds: np.ndarray, opts: RecordOptions,
                rng: np.random.Generator) -> tuple[list[PatientRecord], dict[str, Any]]:
    """Generate the histories of all patients at once.

    Returns the per-patient records and the noise-free trajectories sampled every
    ``opts.truth_every`` days: ``{"days": (k,), "<lab key>": (k, n), "hospitalisation": ..., "death": ...}``
    (hazards per day). Values after a patient's death are NaN.
    """
    n, days = len(params), opts.days
    eps = innovations(noise_seeds, days)
    clinic = _Clinic(params, opts, rng, lesion_angle=rng.uniform(0.0, 2.0 * np.pi, n))
    x = initial_state(params)
    alive = np.ones(n, dtype=bool)
    next_visit = np.zeros(n, dtype=np.int64)
    inpatient_until = np.full(n, -1, dtype=np.int64)
    traj: dict[str, list[np.ndarray]] = {}
    traj_days: list[int] = []
    for day in range(days):
        h = response(params, x)
        obs = observe(params, x, day, h)
        haz = hazards(params, obs, day)
        if day % opts.truth_every == 0:
            traj_days.append(day)
            for k, val in (*obs.items(), *haz.items()):
                traj.setdefault(k, []).append(np.where(alive, val, np.nan))
        u_h, u_d = rng.random(n), rng.random(n)
        dies = alive & (u_d < -np.expm1(-haz["death"]))
        admitted = alive & ~dies & (inpatient_until < day) & (u_h < -np.expm1(-haz["hospitalisation"]))
        visiting = alive & ~dies & ~admitted & (next_visit == day) & (inpatient_until < day)
        for i in map(int, np.flatnonzero(admitted | visiting)):
            o = {k: float(val[i]) for k, val in obs.items()}
            if admitted[i]:
                w = np.exp(np.array([0.01 * (o["ldl"] - 100.0), 0.03 * (o["sbp"] - 130.0),
                                     0.03 * max(60.0 - o["egfr"], 0.0)]))
                cause = _HOSP_CAUSES[int(rng.choice(3, p=w / w.sum()))]
                stay = 2 + int(rng.poisson(3.0))
                inpatient_until[i] = day + stay
                clinic.last_hosp[i] = day
                clinic.visit(i, day, "IMP", o, day + stay, cause)
                next_visit[i] = day + stay + int(rng.integers(14, 29))
            else:
                sick = clinic.visit(i, day, "AMB", o, day, None)
                gap = 180.0 / (1.0 + 0.7 * sick) * rng.gamma(4.0) / 4.0
                next_visit[i] = day + max(14, int(round(gap)))
        for i in map(int, np.flatnonzero(dies)):
            rec = clinic.records[i]
            rec.death_day = day
            rec.events.append({"day": day, "kind": "death", "cause": None})
            for d in list(clinic.open_seg[i]):
                clinic.set_dose(i, d, 0.0, day, None, "death")
        alive &= ~dies
        x = step(params, x, day, clinic.dose, eps[:, day], h)
    for rec in clinic.records:
        rec.end_day = rec.death_day if rec.death_day is not None else days
    out: dict[str, Any] = {"days": np.array(traj_days)}
    out.update({k: np.stack(v) for k, v in traj.items()})
    return clinic.records, out
