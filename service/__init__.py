"""The application layer: what the CLI and the API both do, written once.

One model registry (train writes where forecast, simulate and the API read), one set of
training defaults (:class:`twin.TrainConfig`'s), one duration parser (:func:`core.parse_duration`),
one place for report days and plan specs, training out of the request process.
"""

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
    "DEFAULT_MODEL",
    "DEFAULT_MODEL_ROOT",
    "DEFAULT_TORCH_THREADS",
    "ForecastRun",
    "MODEL_NAME_PATTERN",
    "ModelInfo",
    "ModelRegistry",
    "ProgressFn",
    "REPORT_DAYS",
    "ScenarioRun",
    "default_model_root",
    "forecast_patient",
    "load_twin",
    "plans_from_specs",
    "report_days",
    "set_torch_threads",
    "simulate_patient",
    "train_config",
    "train_isolated",
    "train_model",
]
