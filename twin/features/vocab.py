"""Model vocabulary and normalisers, learned from a training cohort and saved with the model.

Nothing here is tied to one data set: which observations are forecast targets (and their
transforms), which drugs and procedures are treatment inputs, the time scales, which codes get embeddings and which event kinds get hazards are all
counted from the cohort the model is trained on (:func:`build_vocabulary`).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, cast

import numpy as np

from core.errors import TwinError
from graph.schema import Node, NodeType
from graph.timeutil import days_between
from twin.features.records import PatientRecords, age_years, death_time, gene_symbol, is_pulse
from twin.spec import (
    CohortSpec,
    Effect,
    SpecRequest,
    Target,
    Transform,
    Treatment,
    TreatmentKind,
    derive_scales,
    forward_transform,
    inverse_transform,
)

__all__ = [
    "INPATIENT_CLASSES",
    "Normalisers",
    "Vocabulary",
    "build_vocabulary",
    "concept_key",
    "event_kind_of",
]

#: Encounter classes (HL7 v3 ActCode and common spellings) counted as a hospitalisation event.
INPATIENT_CLASSES = frozenset({"IMP", "ACUTE", "NONAC", "inpatient", "hospitalization", "hospitalisation"})


def concept_key(node: Node) -> str:
    """``system|code`` of a coded node (``""`` when it carries no code)."""
    return f"{node.system or ''}|{node.code}" if node.code else ""


def event_kind_of(node: Node) -> str | None:
    """The event kind a node represents for the hazard model, or ``None``.

    ``hospitalisation``: an inpatient encounter (class in :data:`INPATIENT_CLASSES`);
    ``condition:<code>``: the onset of a condition (an event only where the cohort
    specification lists it). Death is read from the Patient node (see
    :func:`twin.features.death_time`).
    """
    if node.type is NodeType.CONDITION and node.code:
        return f"condition:{node.code}"
    if node.type is NodeType.ENCOUNTER:
        cls = node.props.get("class") or node.props.get("class_code")
        if isinstance(cls, dict):
            cls = cls.get("code")
        if isinstance(cls, str) and (cls in INPATIENT_CLASSES or cls.lower() in INPATIENT_CLASSES):
            return "hospitalisation"
    return None


@dataclass
class Normalisers:
    """Per-code transform and standardisation of lab values, per-treatment dose scales, age scaling.

    A target's value is first transformed (``transforms``, see :mod:`twin.spec`), then
    standardised with ``lab_mean``/``lab_std`` computed on the transformed values.
    """

    lab_mean: dict[str, float] = field(default_factory=dict)
    lab_std: dict[str, float] = field(default_factory=dict)
    dose_scale: dict[str, float] = field(default_factory=dict)
    age_mean: float = 50.0
    age_std: float = 20.0
    transforms: dict[str, str] = field(default_factory=dict)

    def lab(self, code: str, value: float) -> float:
        """Standardised (transformed) value of lab ``code`` (0 for codes without a normaliser)."""
        if code not in self.lab_mean:
            return 0.0
        t = self.transforms.get(code, "identity")
        y = value if t == "identity" else float(forward_transform(t, np.float64(value)))
        return (y - self.lab_mean[code]) / self.lab_std[code]

    def lab_inverse(self, code: str, z: np.ndarray | float) -> np.ndarray:
        """Standardised values of ``code`` back in its own unit (inverse of :meth:`lab`)."""
        return inverse_transform(self.transforms.get(code, "identity"),
                                 np.asarray(z, np.float64) * self.lab_std[code] + self.lab_mean[code])

    def dose(self, code: str, dose: float) -> float:
        """Dose in units of the cohort's typical daily dose of this treatment."""
        return dose / self.dose_scale.get(code, 1.0)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Normalisers:
        return cls(**d)


@dataclass
class Vocabulary:
    """Index spaces of the model and its cohort specification. Index 0 of ``concepts`` and
    ``genes`` means unknown; targets, treatments and event kinds are those of ``cohort``."""

    cohort: CohortSpec
    concepts: list[str] = field(default_factory=lambda: ["<unk>"])
    input_labs: list[str] = field(default_factory=list)
    genes: list[str] = field(default_factory=lambda: ["<unk>"])

    def __post_init__(self) -> None:
        self._concept_ix = {c: i for i, c in enumerate(self.concepts)}
        self._gene_ix = {g: i for i, g in enumerate(self.genes)}
        self._target_ix = {c: i for i, c in enumerate(self.target_labs)}
        self._treatment_ix = {c: i for i, c in enumerate(self.treatments)}

    @property
    def target_labs(self) -> list[str]:
        return [t.code for t in self.cohort.targets]

    @property
    def treatments(self) -> list[str]:
        return [t.code for t in self.cohort.treatments]

    @property
    def event_kinds(self) -> list[str]:
        return list(self.cohort.events)

    @property
    def target_units(self) -> dict[str, str]:
        return {t.code: t.unit for t in self.cohort.targets}

    @property
    def target_names(self) -> dict[str, str]:
        return {t.code: t.name or t.code for t in self.cohort.targets}

    @property
    def treatment_names(self) -> dict[str, str]:
        """Display name in the records, per treatment code (where the records give one)."""
        return {t.code: t.name for t in self.cohort.treatments if t.name}

    def concept(self, key: str) -> int:
        return self._concept_ix.get(key, 0)

    def gene(self, symbol: str | None) -> int:
        return self._gene_ix.get((symbol or "").upper(), 0)

    def target(self, code: str | None) -> int | None:
        return self._target_ix.get(code or "")

    def treatment(self, code: str | None) -> int | None:
        return self._treatment_ix.get(code or "")

    @property
    def n_targets(self) -> int:
        return len(self.cohort.targets)

    @property
    def n_treatments(self) -> int:
        return len(self.cohort.treatments)

    def to_dict(self) -> dict[str, Any]:
        return {"cohort": self.cohort.to_dict(), "concepts": self.concepts, "input_labs": self.input_labs,
                "genes": self.genes}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Vocabulary:
        return cls(cohort=CohortSpec.from_dict(d["cohort"]), concepts=d["concepts"], input_labs=d["input_labs"],
                   genes=d["genes"])


def _median(xs: Sequence[float]) -> float:
    s = sorted(xs)
    n = len(s)
    return s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])


def _default_transform(values: Sequence[float]) -> Transform:
    """``log1p`` for non-negative values spread over orders of magnitude (95th percentile over
    10x the median, e.g. a tumour volume), else ``identity``."""
    v = np.asarray(values, np.float64)
    if len(v) < 10 or v.min() < 0:
        return "identity"
    q50, q95 = np.quantile(v, [0.5, 0.95])
    return "log1p" if q50 > 0 and q95 > 10 * q50 else "identity"


def _pick(requested: Sequence[str], names: dict[str, str], known: Sequence[str], what: str) -> list[str]:
    """Codes of ``requested`` items (a code, or a display name from the records, case-insensitive)."""
    by_name: dict[str, set[str]] = defaultdict(set)
    for c, n in names.items():
        by_name[n.strip().lower()].add(c)
    out: list[str] = []
    for item in requested:
        if item in known:
            out.append(item)
            continue
        hits = sorted(by_name.get(item.strip().lower(), set()) & set(known))
        if len(hits) == 1:
            out.append(hits[0])
            continue
        listing = ", ".join(f"{names.get(c, c)} [{c}]" for c in sorted(known)[:40]) or "none"
        why = f"names {len(hits)} codes ({', '.join(hits)})" if hits else "is not a code or name in the training records"
        raise TwinError(f"{what} {item!r} {why}; known: {listing}")
    return out


def _cadence_days(times_per_patient: Iterable[list[datetime]]) -> float:
    """Median over patients of the median gap between distinct target-observation times."""
    gaps = []
    for times in times_per_patient:
        ts = sorted(set(times))
        if len(ts) >= 2:
            gaps.append(_median([days_between(a, b) for a, b in zip(ts, ts[1:], strict=False)]))
    return _median(gaps) if gaps else 90.0


def build_vocabulary(
    patients: Iterable[PatientRecords],
    request: SpecRequest | None = None,
    *,
    max_targets: int = 8,
    min_target_patients: int | float = 0.2,
    max_treatments: int = 16,
    min_treatment_patients: int = 3,
    min_concept_count: int = 2,
    max_concepts: int = 5000,
    min_events: int = 3,
) -> tuple[Vocabulary, Normalisers]:
    """Count a training cohort (full records per patient) into a vocabulary, its cohort
    specification and the normalisers.

    What ``request`` leaves open is derived: targets are the numeric observation codes measured
    at least twice in the most patients (at least ``min_target_patients``, a fraction when < 1),
    each ``log1p``-transformed when its values span orders of magnitude; treatment inputs are the
    medication codes given to the most patients plus the procedure codes recorded with a dose
    (e.g. radiotherapy in Gy); events are death and hospitalisation where at least
    ``min_events`` happened; time scales follow the targets' observation cadence
    (:func:`twin.spec.derive_scales`). Raises :class:`TwinError` when the cohort has no usable
    target, a requested item is not in the records, or one treatment is recorded in units of
    different dimensions.
    """
    req = request or SpecRequest()
    lab_values: dict[str, list[float]] = defaultdict(list)
    lab_patients: Counter[str] = Counter()
    lab_units: dict[str, str] = {}
    lab_names: dict[str, str] = {}
    lab_times: dict[str, list[list[datetime]]] = defaultdict(list)
    tr_doses: dict[str, list[float]] = defaultdict(list)
    tr_units: dict[str, Counter[str]] = defaultdict(Counter)
    tr_names: dict[str, str] = {}
    tr_kind: dict[str, TreatmentKind] = {}
    tr_pulses: Counter[str] = Counter()  # per code: single administrations minus periods
    tr_patients: Counter[str] = Counter()
    concept_counts: Counter[str] = Counter()
    cond_names: dict[str, str] = {}
    genes: Counter[str] = Counter()
    events: Counter[str] = Counter()
    ages: list[float] = []
    n_patients = 0

    for rec in patients:
        n_patients += 1
        per_code: dict[str, list[datetime]] = defaultdict(list)
        treated_here: set[str] = set()
        for n in rec.nodes:
            key = concept_key(n)
            if key and n.type is not NodeType.PATIENT:
                concept_counts[key] += 1
            if n.type is NodeType.LAB and n.value is not None and n.code and math.isfinite(n.value):
                lab_values[n.code].append(float(n.value))
                if n.time is not None:
                    per_code[n.code].append(n.time)
                if n.unit:
                    lab_units.setdefault(n.code, n.unit)
                if n.display:
                    lab_names.setdefault(n.code, n.display)
            elif n.type in (NodeType.MEDICATION, NodeType.PROCEDURE) and n.code:
                treated_here.add(n.code)
                tr_pulses[n.code] += 1 if is_pulse(n) else -1
                tr_kind.setdefault(n.code, "medication" if n.type is NodeType.MEDICATION else "procedure")
                if n.display:
                    tr_names.setdefault(n.code, n.display)
                if n.value is not None:
                    tr_doses[n.code].append(float(n.value))
                    tr_units[n.code][n.unit or "1"] += 1
            elif n.type is NodeType.VARIANT:
                sym = gene_symbol(n, rec.genes)
                if sym:
                    genes[sym.upper()] += 1
            elif n.type is NodeType.PATIENT:
                age = age_years(n, None)
                if age is not None:
                    ages.append(age)
                if death_time(n) is not None:
                    events["death"] += 1
            elif n.type is NodeType.CONDITION and n.code and n.display:
                cond_names.setdefault(n.code, n.display)
            kind = event_kind_of(n)
            if kind and not kind.startswith("condition:"):  # condition onsets are events only on request
                events[kind] += 1
        lab_patients.update(c for c, ts in per_code.items() if len(ts) >= 2)
        for c, ts in per_code.items():
            lab_times[c].append(ts)
        tr_patients.update(treated_here)
    if not lab_values:
        raise TwinError("training cohort has no numeric Lab nodes; nothing to forecast")

    # targets
    if req.targets is not None:
        targets = _pick(req.targets, lab_names, sorted(lab_values), "target")
        thin = [c for c in targets if lab_patients[c] == 0]
        if thin:
            raise TwinError(f"target(s) {thin} are never measured twice in one patient; nothing to learn a course from")
    else:
        need = min_target_patients * n_patients if min_target_patients < 1 else min_target_patients
        ranked = [c for c, k in lab_patients.most_common() if k >= max(need, 1)]
        targets = sorted(ranked[:max_targets])
        if not targets:
            raise TwinError(f"no lab code is measured at least twice in {need:.0f} of {n_patients} patients")
    transforms: dict[str, Transform] = {c: _default_transform(lab_values[c]) for c in targets}
    for item, t in req.transforms.items():
        (code,) = _pick([item], lab_names, targets, "transform target")
        transforms[code] = cast(Transform, t)

    # treatments
    if req.treatments is not None:
        treatments = _pick(req.treatments, tr_names, sorted(tr_kind), "treatment")
    else:
        meds = [c for c, k in tr_patients.most_common() if tr_kind[c] == "medication" and k >= min_treatment_patients]
        dosed_procs = [c for c, k in tr_patients.most_common()
                       if tr_kind[c] == "procedure" and tr_doses.get(c) and k >= min_treatment_patients]
        treatments = sorted(meds[:max_treatments]) + sorted(dosed_procs[:max_treatments])
    tr_unit: dict[str, str] = {}
    for c in treatments:
        units = tr_units.get(c)
        if units and len(units) > 1:
            listing = ", ".join(f"{u} ({k} records)" for u, k in units.most_common())
            raise TwinError(f"treatment {tr_names.get(c, c)} [{c}] is recorded in units of different dimensions: "
                            f"{listing}; they are never mixed. Leave it out or fix the records")
        tr_unit[c] = next(iter(units)) if units else "1"

    effects: dict[str, Effect] = {c: "lasting" if tr_pulses[c] > 0 else "level" for c in treatments}
    for item, e in req.effects.items():
        (code,) = _pick([item], tr_names, treatments, "effect treatment")
        effects[code] = cast(Effect, e)

    # events
    if req.events is not None:
        for e in req.events:
            if e.startswith("condition:") and e.split(":", 1)[1] not in cond_names:
                raise TwinError(f"event {e!r}: no Condition with code {e.split(':', 1)[1]!r} in the training records")
        event_kinds = list(req.events)
    else:
        event_kinds = sorted(k for k, v in events.items() if v >= min_events)

    cadence = _cadence_days(ts for c in targets for ts in lab_times[c])
    scales = derive_scales(cadence, step_days=req.step_days, time_unit_days=req.time_unit_days,
                           horizon_days=req.horizon_days)
    cohort = CohortSpec(
        targets=tuple(Target(c, lab_names.get(c, c), lab_units.get(c, ""), transforms[c]) for c in targets),
        treatments=tuple(Treatment(c, tr_names.get(c, ""), tr_kind[c], tr_unit[c], effects[c]) for c in treatments),
        events=tuple(event_kinds), scales=scales)

    input_labs = sorted(c for c, v in lab_values.items() if len(v) >= 2)
    concepts = ["<unk>"] + sorted(c for c, k in concept_counts.most_common(max_concepts) if k >= min_concept_count)
    norms = Normalisers(transforms={c: t for c, t in transforms.items() if t != "identity"})
    for c in input_labs:
        v = forward_transform(transforms.get(c, "identity"), np.asarray(lab_values[c], np.float64))
        m = float(v.mean())
        sd = float(v.std(ddof=1)) if len(v) > 1 else 0.0
        norms.lab_mean[c] = m
        norms.lab_std[c] = sd if sd > 1e-6 else 1.0
    for c in treatments:
        norms.dose_scale[c] = max(_median(tr_doses[c]), 1e-6) if tr_doses.get(c) else 1.0
    if len(ages) >= 2:
        norms.age_mean = sum(ages) / len(ages)
        norms.age_std = max(math.sqrt(sum((a - norms.age_mean) ** 2 for a in ages) / (len(ages) - 1)), 1.0)
    vocab = Vocabulary(cohort=cohort, concepts=concepts, input_labs=input_labs, genes=["<unk>"] + sorted(genes))
    return vocab, norms
