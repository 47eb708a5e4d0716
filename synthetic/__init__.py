"""Synthetic multimodal cohort with known ground truth and true counterfactuals.

``generate_cohort(SynthConfig(...), out_dir)`` writes FHIR R4 bundles, image arrays and
per-patient ground truth; ``simulate(truths, plans, horizon_days, origin=...)`` replays any
patient under any treatment plan (the oracle). See ``docs/synthetic.md``.
"""

from synthetic.cohort import CohortSummary, SynthConfig, confounding_auc, generate_cohort
from synthetic.drugs import DRUG_INDEX, DRUGS, Drug, drug_by_code
from synthetic.genotype import VARIANTS, Variant
from synthetic.oracle import Action, Plan, SimulationResult, simulate
from synthetic.physiology import LABS, TARGET_LABS, LabSpec
from synthetic.truth import PatientTruth, load_truth

__all__ = [
    "Action",
    "CohortSummary",
    "DRUGS",
    "DRUG_INDEX",
    "Drug",
    "LABS",
    "LabSpec",
    "PatientTruth",
    "Plan",
    "SimulationResult",
    "SynthConfig",
    "TARGET_LABS",
    "VARIANTS",
    "Variant",
    "confounding_auc",
    "drug_by_code",
    "generate_cohort",
    "load_truth",
    "simulate",
]
