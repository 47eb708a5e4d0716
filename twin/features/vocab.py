"""Model vocabulary and normalisers, learned from a training cohort and saved with the model.

Nothing here is tied to one data set: which labs are forecast targets, which drugs are
treatment inputs, which codes get embeddings and which event kinds get hazards are all
counted from the cohort the model is trained on (:func:`build_vocabulary`).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from core.errors import TwinError
from graph.schema import Node, NodeType
from twin.features.records import PatientRecords, age_years, daily_dose, death_time, gene_symbol

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

    ``hospitalisation``: an inpatient encounter (class in :data:`INPATIENT_CLASSES`).
    Death is read from the Patient node (see :func:`twin.features.death_time`).
    """
    if node.type is NodeType.ENCOUNTER:
        cls = node.props.get("class") or node.props.get("class_code")
        if isinstance(cls, dict):
            cls = cls.get("code")
        if isinstance(cls, str) and (cls in INPATIENT_CLASSES or cls.lower() in INPATIENT_CLASSES):
            return "hospitalisation"
    return None


@dataclass
class Normalisers:
    """Per-code standardisation of lab values, per-drug dose scales, age scaling."""

    lab_mean: dict[str, float] = field(default_factory=dict)
    lab_std: dict[str, float] = field(default_factory=dict)
    dose_scale: dict[str, float] = field(default_factory=dict)
    age_mean: float = 50.0
    age_std: float = 20.0

    def lab(self, code: str, value: float) -> float:
        """Standardised value of lab ``code`` (0 for codes without a normaliser)."""
        if code not in self.lab_mean:
            return 0.0
        return (value - self.lab_mean[code]) / self.lab_std[code]

    def lab_inverse(self, code: str, z: float) -> float:
        return z * self.lab_std[code] + self.lab_mean[code]

    def dose(self, code: str, dose: float) -> float:
        """Dose in units of the cohort's typical daily dose of this drug."""
        return dose / self.dose_scale.get(code, 1.0)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Normalisers:
        return cls(**d)


@dataclass
class Vocabulary:
    """Index spaces of the model. Index 0 of ``concepts`` and ``genes`` means unknown."""

    concepts: list[str] = field(default_factory=lambda: ["<unk>"])
    target_labs: list[str] = field(default_factory=list)
    input_labs: list[str] = field(default_factory=list)
    drugs: list[str] = field(default_factory=list)
    genes: list[str] = field(default_factory=lambda: ["<unk>"])
    event_kinds: list[str] = field(default_factory=list)
    target_units: dict[str, str] = field(default_factory=dict)
    target_names: dict[str, str] = field(default_factory=dict)
    drug_names: dict[str, str] = field(default_factory=dict)  # display name in the records, per drug code

    def __post_init__(self) -> None:
        self._concept_ix = {c: i for i, c in enumerate(self.concepts)}
        self._gene_ix = {g: i for i, g in enumerate(self.genes)}
        self._target_ix = {c: i for i, c in enumerate(self.target_labs)}
        self._drug_ix = {c: i for i, c in enumerate(self.drugs)}

    def concept(self, key: str) -> int:
        return self._concept_ix.get(key, 0)

    def gene(self, symbol: str | None) -> int:
        return self._gene_ix.get((symbol or "").upper(), 0)

    def target(self, code: str | None) -> int | None:
        return self._target_ix.get(code or "")

    def drug(self, code: str | None) -> int | None:
        return self._drug_ix.get(code or "")

    @property
    def n_targets(self) -> int:
        return len(self.target_labs)

    @property
    def n_drugs(self) -> int:
        return len(self.drugs)

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in (
            "concepts", "target_labs", "input_labs", "drugs", "genes", "event_kinds", "target_units", "target_names",
            "drug_names")}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Vocabulary:
        return cls(**d)


def _median(xs: Sequence[float]) -> float:
    s = sorted(xs)
    n = len(s)
    return s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])


def build_vocabulary(
    patients: Iterable[PatientRecords],
    *,
    max_targets: int = 8,
    min_target_patients: int | float = 0.2,
    max_drugs: int = 16,
    min_drug_patients: int = 3,
    min_concept_count: int = 2,
    max_concepts: int = 5000,
    min_events: int = 3,
) -> tuple[Vocabulary, Normalisers]:
    """Count a training cohort (full records per patient) into a vocabulary and normalisers.

    Targets are the numeric lab codes measured at least twice in the most patients (at least
    ``min_target_patients`` patients, a fraction when < 1); drug inputs are the medication codes
    given to the most patients. Raises :class:`TwinError` when the cohort has no usable lab.
    """
    lab_values: dict[str, list[float]] = defaultdict(list)
    lab_patients: Counter[str] = Counter()
    lab_units: dict[str, str] = {}
    lab_names: dict[str, str] = {}
    drug_doses: dict[str, list[float]] = defaultdict(list)
    drug_names: dict[str, str] = {}
    drug_patients: Counter[str] = Counter()
    concept_counts: Counter[str] = Counter()
    genes: Counter[str] = Counter()
    events: Counter[str] = Counter()
    ages: list[float] = []
    n_patients = 0

    for rec in patients:
        nodes = rec.nodes
        n_patients += 1
        per_code: Counter[str] = Counter()
        drugs_here: set[str] = set()
        for n in nodes:
            key = concept_key(n)
            if key and n.type is not NodeType.PATIENT:
                concept_counts[key] += 1
            if n.type is NodeType.LAB and n.value is not None and n.code and math.isfinite(n.value):
                lab_values[n.code].append(float(n.value))
                per_code[n.code] += 1
                if n.unit:
                    lab_units.setdefault(n.code, n.unit)
                if n.display:
                    lab_names.setdefault(n.code, n.display)
            elif n.type is NodeType.MEDICATION and n.code:
                drugs_here.add(n.code)
                if n.display:
                    drug_names.setdefault(n.code, n.display)
                drug_doses[n.code].append(daily_dose(n))
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
            kind = event_kind_of(n)
            if kind:
                events[kind] += 1
        lab_patients.update(c for c, k in per_code.items() if k >= 2)
        drug_patients.update(drugs_here)
    if not lab_values:
        raise TwinError("training cohort has no numeric Lab nodes; nothing to forecast")
    need = min_target_patients * n_patients if min_target_patients < 1 else min_target_patients
    ranked = [c for c, k in lab_patients.most_common() if k >= max(need, 1)]
    targets = sorted(ranked[:max_targets])
    if not targets:
        raise TwinError(f"no lab code is measured at least twice in {need:.0f} of {n_patients} patients")
    input_labs = sorted(c for c, v in lab_values.items() if len(v) >= 2)
    drugs = sorted(c for c, k in drug_patients.most_common(max_drugs) if k >= min_drug_patients)
    concepts = ["<unk>"] + sorted(c for c, k in concept_counts.most_common(max_concepts) if k >= min_concept_count)
    norms = Normalisers()
    for c in input_labs:
        v = lab_values[c]
        m = sum(v) / len(v)
        sd = math.sqrt(sum((x - m) ** 2 for x in v) / max(len(v) - 1, 1))
        norms.lab_mean[c] = m
        norms.lab_std[c] = sd if sd > 1e-6 else 1.0
    for c in drugs:
        norms.dose_scale[c] = max(_median(drug_doses[c]), 1e-6)
    if len(ages) >= 2:
        norms.age_mean = sum(ages) / len(ages)
        norms.age_std = max(math.sqrt(sum((a - norms.age_mean) ** 2 for a in ages) / (len(ages) - 1)), 1.0)
    vocab = Vocabulary(
        concepts=concepts,
        target_labs=targets,
        input_labs=input_labs,
        drugs=drugs,
        genes=["<unk>"] + sorted(genes),
        event_kinds=sorted(k for k, v in events.items() if v >= min_events),
        target_units={c: lab_units.get(c, "") for c in targets},
        target_names={c: lab_names.get(c, c) for c in targets},
        drug_names={c: drug_names[c] for c in drugs if c in drug_names},
    )
    return vocab, norms
