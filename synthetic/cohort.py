"""Generate a synthetic cohort: FHIR bundles, image arrays, ground-truth files, a summary.

Layout of ``out_dir``::

    fhir/<patient_id>.json     FHIR R4 transaction Bundle (ingest this folder)
    images/<patient_id>_<k>.npy 32x32 float32 renal ultrasound arrays (Media.content.url
                               is "../images/<patient_id>_<k>.npy", relative to the bundle)
    truth/<patient_id>.json    hidden parameters, noise-free trajectories, treatments, events
    cohort.json                config, seed, summary (no wall-clock values: output is byte-stable)
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import TwinError
from synthetic.drugs import DRUGS
from synthetic.fhir_writer import PatientContext, patient_bundle, patient_uuid
from synthetic.genotype import VARIANTS, sample_genotypes
from synthetic.physiology import LABS, sample_params
from synthetic.records import RecordOptions, run_records
from synthetic.truth import PatientTruth

__all__ = ["CohortSummary", "SynthConfig", "confounding_auc", "generate_cohort"]

_BASE_DATE = datetime(2019, 1, 1, tzinfo=UTC)
#: Which true baseline marker each drug's prescribing depends on (for the confounding measurement).
_DRIVER = {"metformin": "a0", "empagliflozin": "a0", "lisinopril": "s0", "amlodipine": "s0", "atorvastatin": "l0"}


@dataclass(frozen=True)
class SynthConfig:
    """Generator settings. Shares are fractions of patients in [0, 1]."""

    patients: int = 100
    seed: int = 0
    years: float = 3.0
    confounding: float = 0.5
    missing_images: float = 0.3
    missing_genomics: float = 0.5
    truth_every: int = 7

    def __post_init__(self) -> None:
        if self.patients < 1:
            raise TwinError(f"SynthConfig.patients must be >= 1, got {self.patients}")
        if not 0.05 <= self.years <= 50:
            raise TwinError(f"SynthConfig.years must be in [0.05, 50], got {self.years}")
        for name in ("confounding", "missing_images", "missing_genomics"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise TwinError(f"SynthConfig.{name} must be in [0, 1], got {v}")
        if self.truth_every < 1:
            raise TwinError(f"SynthConfig.truth_every must be >= 1, got {self.truth_every}")

    @property
    def days(self) -> int:
        return int(round(self.years * 365))


@dataclass
class CohortSummary:
    """What was generated: counts, modality shares and the measured confounding."""

    config: dict[str, Any]
    out_dir: str
    patient_ids: list[str]
    counts: dict[str, int] = field(default_factory=dict)
    modality_share: dict[str, float] = field(default_factory=dict)
    treated_share: dict[str, float] = field(default_factory=dict)
    confounding_auc: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def confounding_auc(score: np.ndarray, treated: np.ndarray) -> float:
    """AUC of ``score`` for separating treated from untreated (0.5 = treatment independent of score)."""
    treated = np.asarray(treated, dtype=bool)
    n1, n0 = int(treated.sum()), int((~treated).sum())
    if n1 == 0 or n0 == 0:
        return float("nan")
    order = np.argsort(score, kind="stable")
    ranks = np.empty(len(score))
    ranks[order] = np.arange(1, len(score) + 1)
    return float((ranks[treated].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def _series(values: np.ndarray, upto: int) -> list[float | None]:
    """The first ``upto`` values as plain floats, typed as a truth-file series (which may hold nulls)."""
    return [float(v) for v in values[:upto]]


def generate_cohort(config: SynthConfig, out_dir: str | Path) -> CohortSummary:
    """Generate ``config.patients`` patients into ``out_dir`` (created; existing files are overwritten)."""
    out = Path(out_dir)
    for sub in ("fhir", "images", "truth"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    n = config.patients
    rng = np.random.default_rng(config.seed)
    genotypes = sample_genotypes(rng, n)
    params = sample_params(rng, genotypes)
    noise_seeds = rng.integers(0, 2**31 - 1, n)
    has_images = rng.random(n) >= config.missing_images
    has_genomics = rng.random(n) >= config.missing_genomics
    offsets = rng.integers(0, 365, n)
    opts = RecordOptions(days=config.days, confounding=config.confounding, has_images=has_images,
                         has_genomics=has_genomics, truth_every=config.truth_every)
    records, traj = run_records(params, noise_seeds, opts, rng)

    counts = {k: 0 for k in ("encounters", "inpatient_encounters", "lab_values", "conditions",
                             "medication_requests", "procedures", "images", "variant_observations", "deaths")}
    pids: list[str] = []
    code_of = {k: spec.code for k, spec in LABS.items()}
    for i, rec in enumerate(records):
        pid = patient_uuid(config.seed, i)
        pids.append(pid)
        start = _BASE_DATE + timedelta(days=int(offsets[i]))
        birth = (start - timedelta(days=float(params.age0[i]) * 365.25)).date().isoformat()
        genotype = {v.key: int(genotypes[i, j]) for j, v in enumerate(VARIANTS)}
        urls = []
        for k, img in enumerate(rec.images):
            name = f"{pid}_{k}.npy"
            np.save(out / "images" / name, img["array"], allow_pickle=False)
            urls.append(f"../images/{name}")
        ctx = PatientContext(pid=pid, seed=config.seed, start=start, birth_date=birth,
                             female=bool(params.female[i] > 0.5), genotype=genotype, has_genomics=bool(has_genomics[i]), image_urls=urls)
        bundle = patient_bundle(ctx, rec)
        (out / "fhir" / f"{pid}.json").write_text(json.dumps(bundle, separators=(",", ":")), encoding="utf-8")

        upto = int(np.searchsorted(traj["days"], rec.end_day, side="left"))
        trajectories: dict[str, list[float | None]] = {"days": [int(d) for d in traj["days"][:upto]]}
        for key, code in code_of.items():
            trajectories[code] = _series(traj[key][:, i], upto)
        trajectories["egfr_struct"] = _series(traj["egfr_struct"][:, i], upto)
        trajectories["hazard_hospitalisation"] = _series(traj["hospitalisation"][:, i], upto)
        trajectories["hazard_death"] = _series(traj["death"][:, i], upto)
        truth = PatientTruth(
            patient_id=pid, noise_seed=int(noise_seeds[i]), params=params.row(i),
            treatments=[{k: s[k] for k in ("drug", "dose", "start_day", "stop_day", "stop_reason")}
                        for s in rec.segments],
            follow_up_days=rec.end_day, death_day=rec.death_day, start_date=start.date().isoformat(),
            genotype=genotype, events=rec.events, trajectories=trajectories,
            observations=[{"day": o["day"], "code": code_of[o["key"]], "value": o["value"], "true": o["true"]}
                          for o in rec.observations],
            modalities={"images": bool(rec.images), "genomics": bool(has_genomics[i])},
        )
        (out / "truth" / f"{pid}.json").write_text(json.dumps(truth.to_json(), separators=(",", ":")), encoding="utf-8")

        counts["encounters"] += len(rec.visits)
        counts["inpatient_encounters"] += sum(v["kind"] == "IMP" for v in rec.visits)
        counts["lab_values"] += len(rec.observations)
        counts["conditions"] += len(rec.conditions)
        counts["medication_requests"] += len(rec.segments)
        counts["procedures"] += len(rec.procedures)
        counts["images"] += len(rec.images)
        counts["variant_observations"] += int(has_genomics[i]) * sum(int(g > 0) for g in genotype.values())
        counts["deaths"] += int(rec.death_day is not None)

    started = {d.key: np.array([any(s["drug"] == d.code for s in r.segments) for r in records]) for d in DRUGS}
    summary = CohortSummary(
        config={**asdict(config), "days": config.days},
        out_dir=str(out),
        patient_ids=pids,
        counts=counts,
        modality_share={
            "images": float(np.mean([bool(r.images) for r in records])),
            "genomics": float(np.mean(has_genomics)),
            "genomics_with_variant": float(np.mean(has_genomics & (genotypes.sum(axis=1) > 0))),
            "medications": float(np.mean([bool(r.segments) for r in records])),
            "procedures": float(np.mean([bool(r.procedures) for r in records])),
        },
        treated_share={k: float(v.mean()) for k, v in started.items()},
        confounding_auc={k: confounding_auc(getattr(params, _DRIVER[k]), v) for k, v in started.items()},
    )
    doc = summary.to_dict()
    doc.pop("out_dir")
    (out / "cohort.json").write_text(json.dumps(doc, indent=2, sort_keys=True), encoding="utf-8")
    return summary
