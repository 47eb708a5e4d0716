"""Synthetic multimodal cohort with known ground truth and true counterfactuals.

``generate_cohort(SynthConfig(...), out_dir)`` writes FHIR R4 bundles, image arrays and
per-patient ground truth; ``simulate(truths, plans, horizon_days, origin=...)`` replays any
patient under any treatment plan (the oracle). See ``docs/synthetic.md``.
"""

from twin.synthetic.cohort import CohortSummary, SynthConfig, confounding_auc, generate_cohort
from twin.synthetic.drugs import DRUG_INDEX, DRUGS, Drug, drug_by_code
from twin.synthetic.genotype import VARIANTS, Variant
from twin.synthetic.oracle import Action, Plan, SimulationResult, simulate
from twin.synthetic.physiology import LABS, TARGET_LABS, LabSpec
from twin.synthetic.truth import PatientTruth, load_truth

__all__ = [
    "DRUGS",
    "DRUG_INDEX",
    "LABS",
    "TARGET_LABS",
    "VARIANTS",
    "Action",
    "CohortSummary",
    "Drug",
    "LabSpec",
    "PatientTruth",
    "Plan",
    "SimulationResult",
    "SynthConfig",
    "Variant",
    "confounding_auc",
    "drug_by_code",
    "generate_cohort",
    "load_truth",
    "simulate",
]
