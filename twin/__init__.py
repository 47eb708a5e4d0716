"""Patient digital twins: features from the as-of graph, the GNN + neural-ODE model, training.

    from twin import Twin, TrainConfig, train, load_model

    report = train(store, TrainConfig(epochs=10), "twin-data/models/default/model.pt")
    twin = Twin.load(store, "p42", load_model("twin-data/models/default/model.pt"))
    forecast = twin.forecast(horizon_days=365)

Callers outside ``twin`` import from here only. Names load on first use (PEP 562), so
``from twin import TrainConfig`` does not import torch; the model names do.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from twin.config import ModelConfig, TrainConfig
    from twin.features import DoseAction
    from twin.model.checkpoint import TwinEnsemble, load_model
    from twin.plotting import lab_label
    from twin.spec import EFFECTS, TRANSFORMS, CohortSpec, SpecRequest, Target, TimeScales, Treatment
    from twin.training import TrainReport, train
    from twin.twin import Attribution, Forecast, LabForecast, Twin

__all__ = [
    "Attribution",
    "CohortSpec",
    "DoseAction",
    "EFFECTS",
    "Forecast",
    "LabForecast",
    "ModelConfig",
    "SpecRequest",
    "TRANSFORMS",
    "Target",
    "TimeScales",
    "TrainConfig",
    "TrainReport",
    "Treatment",
    "Twin",
    "TwinEnsemble",
    "lab_label",
    "load_model",
    "train",
]

_WHERE = {
    "Attribution": "twin.twin",
    "CohortSpec": "twin.spec",
    "SpecRequest": "twin.spec",
    "TRANSFORMS": "twin.spec",
    "Target": "twin.spec",
    "TimeScales": "twin.spec",
    "Treatment": "twin.spec",
    "DoseAction": "twin.features",
    "EFFECTS": "twin.spec",
    "Forecast": "twin.twin",
    "LabForecast": "twin.twin",
    "ModelConfig": "twin.config",
    "TrainConfig": "twin.config",
    "TrainReport": "twin.training",
    "Twin": "twin.twin",
    "TwinEnsemble": "twin.model.checkpoint",
    "lab_label": "twin.plotting",
    "load_model": "twin.model.checkpoint",
    "train": "twin.training",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'twin' has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
