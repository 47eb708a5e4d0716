"""Model and training settings: validated at construction, saved in every checkpoint.

Torch-free on purpose, so the CLI and the API can show and check these defaults without
loading the model code. The defaults here are the only ones: the CLI options and the API's
request schema read them from these classes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from core.errors import ConfigError
from twin.spec import SpecRequest

__all__ = ["ModelConfig", "TrainConfig"]


@dataclass(frozen=True)
class ModelConfig:
    """Sizes of the encoder, latent dynamics and decoders, and the fixed-grid ODE ``solver``.

    The solver's step and the model's time unit are not here: they follow the cohort
    (:class:`twin.spec.TimeScales`, set through ``TrainConfig.spec``).
    """

    hidden: int = 32
    latent: int = 16
    static: int = 8
    layers: int = 2
    ode_hidden: int = 64
    solver: str = "midpoint"
    min_logvar: float = -7.0
    max_logvar: float = 3.0

    def __post_init__(self) -> None:
        for name in ("hidden", "latent", "static", "layers", "ode_hidden"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"ModelConfig.{name} must be >= 1, got {getattr(self, name)!r}")
        if self.solver not in ("euler", "midpoint", "rk4"):
            raise ConfigError(f"ModelConfig.solver must be one of euler, midpoint, rk4; got {self.solver!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TrainConfig:
    """Training settings (all saved in the checkpoint). ``spec`` sets parts of the cohort
    specification (targets, transforms, treatments, events, time scales); the rest is derived
    from the training records."""

    epochs: int = 30
    batch_size: int = 32
    lr: float = 3e-3
    # The direct treatment pathway (TwinModel.treatment_parameters) has few parameters whose
    # gradient is small (a drug change touches a few per cent of a cohort's observations): it
    # gets a 30x larger step, and a light L1 penalty on its gains (in units of the mean per-
    # observation loss) that keeps drug -> lab effects the data does not support at zero.
    treatment_lr_mult: float = 30.0
    treatment_eps: float = 1e-8
    treatment_l1: float = 3e-4
    weight_decay: float = 1e-5
    origins_per_patient: int = 4
    change_origins_per_patient: int = 2  # extra origins just before therapy changes (build_examples)
    val_fraction: float = 0.15
    patience: int = 5
    # what early stopping and the kept weights follow on the validation set: the full loss (a
    # proper score of the predictive distribution) or the targets' squared error (point accuracy)
    early_stopping: Literal["loss", "lab_mse"] = "loss"
    members: int = 3
    kl_weight: float = 0.01
    nll_beta: float = 0.5  # beta-NLL weighting of the lab likelihood (TwinModel.loss); 0 = plain NLL
    event_weight: float = 0.5
    drop_image_p: float = 0.2
    drop_variant_p: float = 0.2
    image_epochs: int = 30
    image_dim: int = 8  # autoencoder code size (embeddings add 8 first-order image statistics)
    seed: int = 0
    device: str = "cpu"
    progress: bool = True
    model: ModelConfig = field(default_factory=ModelConfig)
    spec: SpecRequest = field(default_factory=SpecRequest)

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.members < 1 or self.origins_per_patient < 1:
            raise ConfigError("TrainConfig: epochs, batch_size, members and origins_per_patient must be >= 1")
        if self.change_origins_per_patient < 0:
            raise ConfigError(f"TrainConfig.change_origins_per_patient must be >= 0, got {self.change_origins_per_patient!r}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(f"TrainConfig.val_fraction must be in [0, 1), got {self.val_fraction!r}")
        if self.treatment_lr_mult <= 0 or self.treatment_eps <= 0 or self.treatment_l1 < 0:
            raise ConfigError(f"TrainConfig.treatment_lr_mult and treatment_eps must be > 0 and treatment_l1 >= 0, "
                             f"got {self.treatment_lr_mult!r}, {self.treatment_eps!r} and {self.treatment_l1!r}")
        if self.early_stopping not in ("loss", "lab_mse"):
            raise ConfigError(f"TrainConfig.early_stopping must be 'loss' or 'lab_mse', got {self.early_stopping!r}")
        if isinstance(self.model, dict):
            object.__setattr__(self, "model", ModelConfig(**self.model))
        if isinstance(self.spec, dict):
            object.__setattr__(self, "spec", SpecRequest.from_dict(self.spec))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
