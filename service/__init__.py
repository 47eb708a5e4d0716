"""The application layer: what the CLI and the API both do, written once.

One model registry (train writes where forecast, simulate and the API read), one set of
training defaults (:class:`twin.TrainConfig`'s), one duration parser (:func:`core.parse_duration`),
one place for report days and plan specs, training out of the request process.
"""

from service.cancel import Cancelled, CancelToken, checkpoint
from service.fhir import (
                              FHIR_JSON,
                              NODE_SYSTEM,
                              STATISTIC_SYSTEM,
                              ModelStamp,
                              forecast_bundle,
                              model_stamp,
                              scenario_bundle,
)
from service.limits import (
                              DEFAULT_MAX_JOB_COST,
                              DEFAULT_MAX_REQUEST_COST,
                              OverBudget,
                              RequestCost,
                              check_cost,
                              forecast_cost,
                              request_cost,
                              scenario_cost,
)
from service.plans import BUILTIN_PREFIX, plans_from_specs
from service.registry import (
                              DEFAULT_MODEL,
                              DEFAULT_MODEL_ROOT,
                              MODEL_NAME_PATTERN,
                              ModelInfo,
                              ModelRegistry,
                              default_model_root,
)
from service.runtime import DEFAULT_TORCH_THREADS, set_torch_threads
from service.training import ProgressFn, train_config, train_isolated, train_model
from service.trials import (
                              TRIAL_DAYS,
                              PlannedTrial,
                              TrialRun,
                              plan_trial,
                              run_cohort_trial,
                              run_planned_trial,
                              trial_cost,
)
from service.twins import (
                              REPORT_DAYS,
                              ForecastRun,
                              ScenarioRun,
                              forecast_patient,
                              load_twin,
                              report_days,
                              simulate_patient,
)

__all__ = [
    "BUILTIN_PREFIX",
    "CancelToken",
    "Cancelled",
    "DEFAULT_MAX_JOB_COST",
    "DEFAULT_MAX_REQUEST_COST",
    "DEFAULT_MODEL",
    "DEFAULT_MODEL_ROOT",
    "DEFAULT_TORCH_THREADS",
    "FHIR_JSON",
    "ForecastRun",
    "MODEL_NAME_PATTERN",
    "ModelInfo",
    "ModelRegistry",
    "ModelStamp",
    "NODE_SYSTEM",
    "OverBudget",
    "PlannedTrial",
    "ProgressFn",
    "REPORT_DAYS",
    "RequestCost",
    "STATISTIC_SYSTEM",
    "ScenarioRun",
    "TRIAL_DAYS",
    "TrialRun",
    "check_cost",
    "checkpoint",
    "default_model_root",
    "forecast_bundle",
    "forecast_cost",
    "forecast_patient",
    "load_twin",
    "model_stamp",
    "plan_trial",
    "plans_from_specs",
    "report_days",
    "request_cost",
    "run_cohort_trial",
    "run_planned_trial",
    "scenario_bundle",
    "scenario_cost",
    "set_torch_threads",
    "simulate_patient",
    "train_config",
    "train_isolated",
    "train_model",
    "trial_cost",
]
