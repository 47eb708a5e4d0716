"""What-if treatment scenarios simulated on twins: plans, batched simulation, ranking, plots.

    plan = TreatmentPlan.from_dict({...})            # or load_plans("plans.yaml"), load_regimens("diabetes")
    result = simulate([twin], [plan_a, plan_b], 365, n_samples=64, seed=0)
    ranking = rank(result, "minimise HbA1c at 180d subject to eGFR > 45")
    plot_trajectories(result, "out.png")
    trial = run_trial(TrialSpec(store_url, model_path, {"has_condition": "44054006"}, (a, b)))  # a cohort

Plans name the treatments of the twin's model (``TreatmentCatalog(ens.cohort.treatments)``)
by code or by their names in the training records; nothing else is known.
"""

from scenarios.guardrails import Flag, check_plan
from scenarios.plan import Action, ResolvedPlan, TreatmentPlan, load_plan, load_plans
from scenarios.plots import plot_trajectories
from scenarios.rank import Objective, Ranking, rank
from scenarios.regimens import conditions as regimen_conditions
from scenarios.regimens import find_regimen, load_regimens
from scenarios.result import ScenarioResult, Threshold
from scenarios.simulate import simulate
from scenarios.treatments import TreatmentCatalog
from scenarios.trial import DEFAULT_SHARD_SIZE, TrialResult, TrialSpec, run_shard, run_trial, select_cohort

__all__ = [
    "Action",
    "DEFAULT_SHARD_SIZE",
    "Flag",
    "Objective",
    "Ranking",
    "ResolvedPlan",
    "ScenarioResult",
    "Threshold",
    "TreatmentCatalog",
    "TreatmentPlan",
    "TrialResult",
    "TrialSpec",
    "check_plan",
    "find_regimen",
    "load_plan",
    "load_plans",
    "load_regimens",
    "plot_trajectories",
    "rank",
    "regimen_conditions",
    "run_shard",
    "run_trial",
    "select_cohort",
    "simulate",
]
